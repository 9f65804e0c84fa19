"""The ``fairpp`` argument parser: every sub-command and its flags, in one place.

Flags of ``simulate`` and ``train`` are generated from their config dataclasses, as the TUI
forms are, so a new option is one dataclass field.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """data lives in the platform data directory, or in $FAIRPP_HOME when set;
--db PATH picks another database file for one command.
Run `fairpp COMMAND --help` for the options of a command."""


def _common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS,
                        help="database file to use (default: fairpp.db in the data directory)")
    return parent


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def _add_bank(p: argparse.ArgumentParser, default: str = "(default: the bank of the run's "
              "answers, fairpp when it has answers there)") -> None:
    from fairpp_app.core.questions import BANKS

    p.add_argument("--bank", choices=BANKS,
                   help="question bank: fairpp (this app's wording) or official (the imported "
                        f"release's wording); a split is always one bank's {default}")


TARGET_HELP = ("target: a persona (number or slug, e.g. 6) or a group of personas, '3,6' for an "
               "equal mix or '3:0.7,6:0.3' for given shares (its answer is the argmax of the mix "
               "of its members' A/B/C distributions)")

MODEL_SPECS = """model specs, [LABEL=]BACKEND[:MODEL][@URL]:
  embedded                              the Gemma 3 270M model shipped with fairpp
  gguf:/path/model.gguf                 any GGUF file, run by llama.cpp in-process
  ollama:TAG[@http://host:11434]        a model an Ollama server holds
  openai:MODEL@http://host:port/v1      an OpenAI-compatible server (vLLM, llama.cpp server, ...)
  transformers:/path/folder             a local Hugging Face model folder
  mlx:/path/or/repo                     mlx-lm weights
  LABEL=...                             names the row (default: the model's name)
example: fairpp position embedded served=openai:gemma@http://127.0.0.1:8080/v1 --from-run personas"""


def _add_picks(p: argparse.ArgumentParser) -> None:
    p.add_argument("--with", dest="with_runs", metavar="RUN", action="append", default=[],
                   help="place the model respondents of this run among the personas too (an "
                        "evaluated adapter's eval-NAME run included); repeatable")
    p.add_argument("--set", dest="position_set", metavar="NAME",
                   help="a position set stored by `fairpp position --name NAME`: its persona "
                        "run and model runs")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="fairpp", parents=[common], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fair-PP on your machine: build the social-equity question bank, let "
                    "survey personas answer it through a local model, compare any model with "
                    "the personas, and fine-tune a model toward one persona. "
                    "With no command, opens the terminal app.")
    parser.add_argument("--version", action="version", version=f"fairpp {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_: str, parent=sub, **kw) -> argparse.ArgumentParser:
        return parent.add_parser(name, help=help_, description=help_, parents=[common], **kw)

    q = add("questions", "build and inspect the question bank")
    qsub = q.add_subparsers(dest="action", metavar="ACTION", required=True)
    qb = add("build", "write the 28,420 template questions and their train/test split", qsub)
    _add_json(qb)
    qs = add("stats", "count questions per topic, category, problem, group, dimension, framing and split", qsub)
    _add_bank(qs, "(default: fairpp)")
    _add_json(qs)
    qshow = add("show", "print one question with its options", qsub)
    qshow.add_argument("id", help="question id")
    _add_json(qshow)

    p = add("personas", "list the survey personas")
    psub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    pl = add("list", "list personas (built-in and your own)", psub)
    _add_json(pl)
    ps = add("show", "print one persona in full", psub)
    ps.add_argument("persona", help="number (1-7) or slug")
    _add_json(ps)
    add("path", "print where your own personas.toml is read from", psub)

    imp = add("import", "import answers from files")
    isub = imp.add_subparsers(dest="format", metavar="FORMAT", required=True)
    ic = add("fairpp-csv", "import an official Fair-PP file (CSV or parquet) or a fairpp export", isub)
    ic.add_argument("file", type=Path, help="CSV, parquet or JSONL file, or a dataset folder "
                    "(saved with `datasets`, or downloaded: its files' names give their splits)")
    ic.add_argument("--run", help="run name to import into (default: the file name)")
    ic.add_argument("--split", choices=("train", "test"),
                    help="split of the rows the file does not place itself (no `split` column, "
                         "no train/test in its name); scenario rows are always the scenario "
                         "split (default: train)")
    ic.add_argument("--replace", action="store_true",
                    help="let the file's answers and wording replace stored ones that differ "
                         "(default: keep the stored ones and report each difference)")
    _add_json(ic)
    isv = add("survey", "import human answer shares per segment (a CSV in the layout the README "
              "describes) as reference data for `fairpp metrics --reference`; any bad row "
              "imports nothing", isub)
    isv.add_argument("file", type=Path, help="CSV file: segment, persona, question_id (or the "
                     "question's fields, or topic and dimension), share_a, share_b, share_c, n")
    isv.add_argument("--name", required=True, help="name to store the survey under (an "
                     "existing survey of that name is replaced)")
    isv.add_argument("--map", metavar="SEGMENT=PERSONA", action="append", default=[],
                     help="map a segment to a persona (number or slug) instead of, or over, the "
                          "file's persona column; repeat for several segments")
    _add_json(isv)

    ex = add("export", "export a run's questions with every respondent's answers")
    ex.add_argument("--run", required=True, help="run to export")
    ex.add_argument("--format", required=True, choices=("csv", "parquet", "jsonl", "hf"),
                    help="file format; hf writes a Hugging Face datasets folder")
    ex.add_argument("--out", required=True, type=Path, help="output file (folder for hf)")

    m = add("metrics", "similarity of every respondent to every persona in a run, with the "
            "model respondents of other runs placed among them (--with, --set)")
    m.add_argument("--run", help="run to analyse: its personas and any model respondent in it "
                   "(required unless --set names a stored position set)")
    m.add_argument("--split", choices=("all", "train", "test", "scenario"),
                   help="questions compared (default: all; with --set, the set's split)")
    m.add_argument("--persona-run", help="take the personas' answers from this run instead; "
                   "wording consistency reads both banks of the run and this one together")
    _add_bank(m)
    m.add_argument("--reference", metavar="NAME",
                   help="also compare every respondent with every segment of the survey NAME "
                        "(imported with `fairpp import survey`), with 95%% intervals from its "
                        "sample sizes")
    _add_picks(m)
    _add_json(m)

    pos = add("position", "place several models among the personas of a run (the paper's "
              "Table 1): each model answers the questions as the bare model respondent, one "
              "resumable run per model, then its similarity to every persona is printed",
              epilog=MODEL_SPECS, formatter_class=argparse.RawDescriptionHelpFormatter)
    pos.add_argument("models", nargs="+", metavar="MODEL",
                     help="a model spec, [LABEL=]BACKEND[:MODEL][@URL] (see below); repeat for more")
    pos.add_argument("--from-run", required=True, metavar="RUN",
                     help="run holding the personas' answers to compare with")
    pos.add_argument("--split", default="test", choices=("test", "train", "all", "scenario"),
                     help="questions to ask (default: test, the paper's test split)")
    pos.add_argument("--limit", type=int, metavar="N", help="ask only the first N questions of the split")
    pos.add_argument("--mode", default="logprob", choices=("logprob", "text"),
                     help="logprob: score the option letters; text: generate and parse (default: logprob)")
    pos.add_argument("--debias", default="none", choices=("none", "permute"),
                     help="permute: also score with options A and B swapped and average (default: none)")
    pos.add_argument("--api-key-env", metavar="NAME",
                     help="environment variable holding the API key of the openai servers named")
    pos.add_argument("--max-retries", type=int, default=5, metavar="N",
                     help="retries of a failing request before that model is given up (default 5)")
    pos.add_argument("--name", metavar="NAME",
                     help="store the set (models, persona run, split) as NAME for `fairpp report "
                          "--set` and the Analysis screen")
    pos.add_argument("--plan", action="store_true",
                     help="print the planned records and time estimate, then stop")
    pos.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_json(pos)

    w = add("weights", "the paper's sample weights for a target persona")
    w.add_argument("--run", required=True, help="run holding the personas' answers")
    w.add_argument("--target", required=True, help=TARGET_HELP)
    w.add_argument("--alpha", type=float, default=1.0, help="tier exponent alpha (default 1)")
    w.add_argument("--beta", type=float, default=1.0, help="tier-size exponent beta (default 1)")
    w.add_argument("--split", default="train", choices=("all", "train", "test", "scenario"),
                   help="questions to weight (default: train)")
    _add_bank(w)
    _add_json(w)

    sim = add("simulate", "let personas (or a bare model) answer questions through a backend; "
              "rerun the same command to resume")
    add_config_flags(sim, "simulate")
    sim.add_argument("--config-json", metavar="JSON",
                     help="the whole configuration as one JSON object of the fields above (how "
                          "the app starts a simulation in a child process); other flags are ignored")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_json(sim)

    jb = add("jobs", "the processes working on runs now (started from the app or the CLI); "
             "with no action, list them")
    jsub = jb.add_subparsers(dest="action", metavar="ACTION")
    js = add("stop", "ask the job working on a run to stop after the records in flight", jsub)
    js.add_argument("name", help="run name")
    js.add_argument("--pause", action="store_true",
                    help="end it 'paused' instead of 'cancelled' (either way the same command resumes it)")
    jl = add("log", "print the log of a job the app started (its stderr)", jsub)
    jl.add_argument("name", help="run name")
    jl.add_argument("--lines", type=int, default=0, metavar="N", help="only the last N lines")
    _add_json(jb)

    sc = add("scenarios", "scenario questions: a short vignette per option, written by a model")
    scsub = sc.add_subparsers(dest="action", metavar="ACTION", required=True)
    sg = add("generate", "write scenario questions for template questions that have none yet "
             "(resumable)", scsub)
    sg.add_argument("--backend", default="embedded", help="a backend that generates text (default: embedded)")
    sg.add_argument("--model", help="model name, path or tag for the backend")
    sg.add_argument("--base-url", help="server URL for openai/ollama backends")
    sg.add_argument("--api-key-env", help="NAME of the environment variable holding the API key")
    sg.add_argument("--limit", type=int, help="handle only the first N template questions")
    sg.add_argument("--from-split", default="test", choices=("train", "test", "all"),
                    help="template questions to write scenarios for (default: test, as in the paper)")
    sg.add_argument("--attempts", type=int, default=3, help="tries per vignette before giving up (default 3)")
    sg.add_argument("--run", help="run name for the generation log")
    _add_json(sg)

    tr = add("train", "fine-tune a model toward one persona (sft, wsft, dpo, wdpo) with LoRA; "
             "resumable with --resume NAME",
             epilog="several GPUs: accelerate launch -m fairpp_app.cli train ... (one process "
                    "per GPU; --batch-size is per GPU)")
    add_config_flags(tr, "train")
    tr.add_argument("--resume", metavar="NAME", help="continue the training NAME from its last "
                    "checkpoint (its stored settings are used; other flags are ignored)")
    tr.add_argument("--config-json", metavar="JSON",
                    help="the whole training configuration as JSON (how the app starts a training "
                         "in a child process); other configuration flags are ignored")
    tr.add_argument("--quiet", action="store_true", help="no line per step on stderr")
    _add_json(tr)

    sw = add("sweep", "train and evaluate a grid (methods x recipes x weighting x alpha x beta x "
             "seeds) unattended, then print the report with intervals; rerun the same command "
             "to resume after any stop, kill -9 included",
             epilog="a sweep file (TOML or JSON) holds name, [grid] (or [[grid]] tables: "
                    "methods, recipes, weighting, alpha, beta, seeds as lists), [train] (any "
                    "training setting shared by every cell, e.g. from_run, target, max_steps) "
                    "and [evaluate] (split, limit, device, base); flags override it. With "
                    "--recipes paper a dpo/wdpo cell starts from the sft/wsft cell of its seed.")
    sw.add_argument("--file", metavar="PATH", type=Path, help="sweep file (TOML or JSON)")
    sw.add_argument("--name", help="sweep name, the prefix of its cells' training names "
                    "(default: sweep)")
    grid_help = {"methods": "training methods", "recipes": "recipes (fairpp, paper)",
                 "weighting": "weighting estimators of the w-methods (batch, dataset, sample)",
                 "alpha": "tier exponents alpha of the w-methods",
                 "beta": "tier-size exponents beta of the w-methods",
                 "seeds": "seeds: each cell is trained once per seed"}
    for key, text in grid_help.items():
        sw.add_argument(f"--{key}", metavar="LIST", help=f"{text}, comma-separated")
    add_config_flags(sw, "train", skip=("method", "recipe", "weighting", "alpha", "beta", "seed",
                                        "name", "init_from"))
    sw.add_argument("--evaluate-split", choices=("test", "scenario", "train", "all"),
                    help="questions each cell answers after training, as `fairpp evaluate "
                         "--split` (default: test)")
    sw.add_argument("--evaluate-limit", type=int, metavar="N",
                    help="answer only the first N questions of that split")
    sw.add_argument("--evaluate-device", choices=("auto", "cpu", "cuda", "mps"),
                    help="device of the evaluations (default: auto)")
    sw.add_argument("--no-base", action="store_true", help="do not evaluate the base model")
    sw.add_argument("--quiet", action="store_true", help="no line per training step on stderr")
    _add_json(sw)

    ev = add("evaluate", "answer a split with a trained adapter (or the base model) as the bare "
             "model respondent; stored as run eval-NAME, resumable")
    which = ev.add_mutually_exclusive_group(required=True)
    which.add_argument("--adapter", metavar="NAME", help="finished training to evaluate")
    which.add_argument("--base", metavar="MODEL", nargs="?", const="embedded",
                       help="evaluate the untrained base model instead (default: the embedded one)")
    ev.add_argument("--split", default="test", choices=("test", "scenario", "train", "all"),
                    help="questions to answer (default: test)")
    ev.add_argument("--limit", type=int, help="answer only the first N questions of the split")
    ev.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    ev.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass (default 8)")
    ev.add_argument("--debias", choices=("none", "permute"),
                    help="permute: also answer with options A and B swapped and average, as "
                         "`simulate --debias permute` does (default: an adapter follows the run "
                         "it was trained from; --base uses none)")
    _add_bank(ev, "(default: an adapter's training's bank; --base uses fairpp)")
    _add_json(ev)

    rp = add("report", "the paper's Table 2 for a target persona: base, role-play, SFT, WSFT, DPO, "
             "WDPO, each with a 95 percent interval (t over seeds, else a bootstrap over questions) and "
             "whether it differs from DPO and from base beyond the intervals; with --html, a "
             "self-contained page with Tables 1 and 2 and the paper's figures")
    rp.add_argument("--target", default="6", help=TARGET_HELP + " (default 6)")
    rp.add_argument("--from-run", help="run holding the personas' answers (default: that of the "
                    "latest training for the target)")
    rp.add_argument("--split", default="test", choices=("test", "scenario", "train", "all"),
                    help="questions compared (default: test)")
    rp.add_argument("--use", metavar="NAME", action="append", default=[],
                    help="fill its method's row with the training NAME alone instead of the "
                         "latest one and its seed siblings (repeat for several methods)")
    rp.add_argument("--variants", action="store_true",
                    help="a row for every group of trainings that differ only by --seed (a "
                         "sweep's grid), labelled by the settings that differ; by default each "
                         "method shows the group of its latest training")
    rp.add_argument("--sweep", metavar="NAME", help="only the trainings of the sweep NAME (their "
                    "names start with NAME-), every group its own row (implies --variants)")
    _add_bank(rp)
    rp.add_argument("--html", metavar="OUT.html", type=Path,
                    help="write one self-contained HTML file (no network, no scripts): Table 1 "
                         "of the models of --with/--set, Table 2, and the figures")
    rp.add_argument("--figures", metavar="DIR", type=Path,
                    help="write each figure of the report as PNG and SVG into DIR")
    _add_picks(rp)
    _add_json(rp)

    add("backends", "list backends and whether they can run here")

    from fairpp_app.jobs.doctor import ENGINES

    dr = add("doctor", "load each installed engine that needs no server (embedded llama.cpp, "
             "transformers, mlx) in a child process and say whether it runs; exits 1 when one "
             "does not")
    dr.add_argument("--engine", action="append", choices=list(ENGINES),
                    help="check only this engine (repeatable; default: all)")
    _add_json(dr)

    r = add("runs", "list runs")
    _add_json(r)

    info = add("info", "where the data lives and what it holds")
    _add_json(info)
    return parser


def add_config_flags(parser: argparse.ArgumentParser, which: str, skip: tuple[str, ...] = ()) -> None:
    """Flags generated from a config dataclass's fields (the TUI form uses the same fields);
    ``skip`` leaves some out (a command that sets them its own way)."""
    import dataclasses
    import typing

    from fairpp_app.core.simulation_config import SimulationConfig
    from fairpp_app.training.config import TrainingConfig

    cls = {"simulate": SimulationConfig, "train": TrainingConfig}[which]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        meta = dict(f.metadata)
        help_ = meta.get("help", "")
        if f.default not in (None, False, dataclasses.MISSING):
            help_ += f" (default: {f.default})"
        kind = hints[f.name]
        # SUPPRESS: a flag not given leaves room for the config file's value.
        if kind is bool:
            parser.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=help_)
            continue
        base = int if kind in (int, int | None) else float if kind in (float, float | None) else str
        parser.add_argument(flag, type=base, default=argparse.SUPPRESS, choices=meta.get("choices"),
                            help=help_, dest=f.name)


def config_from_args(cls, args: argparse.Namespace, section: str | None = None):
    """Dataclass defaults, overlaid by the config file's [section], overlaid by flags."""
    import dataclasses

    from fairpp_app.core.user_config import load_config

    values = dict(load_config().get(section, {})) if section else {}
    values.update({f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                   if hasattr(args, f.name)})
    return cls(**values)


def _version() -> str:
    from fairpp_app import __version__

    return __version__
