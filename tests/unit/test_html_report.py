"""``fairpp report --html`` and ``--figures``, looked at in headless Chromium as a person would.

The end-to-end test makes every input for real: the embedded model placed among a persona
run by ``fairpp position`` (a stored set), and a DPO training of a tiny random model with
its evaluation; the page is then loaded in Debian's Chromium, which must report no console
error, hold one drawn SVG per figure, and leave a screenshot (its path is printed).
"""

from __future__ import annotations

import json
import re

import pytest

from fairpp_app.cli import main
from tests.support import chromium
from tests.support.training_data import N_TEST, N_TRAIN, PERSONA_RUN, persona_records
from tests.support.tui_data import MODEL, RUN, insert_synthetic_run

needs_chromium = pytest.mark.skipif(chromium.executable() is None,
                                    reason="Debian's chromium package is not installed")

#: Anything that would make the page reach beyond itself.
#: (matplotlib's own references are inside the page: url(#clip) and data: images.)
EXTERNAL = re.compile(r"<script|<link\b|<img\b|<iframe|(src|href)\s*=\s*[\"']?(https?:|//)"
                      r"|url\(\s*['\"]?(?!#|data:)", re.I)


def _figures(dom: str) -> list[str]:
    """The SVG of every <figure> in a DOM."""
    return re.findall(r"<figure[^>]*>\s*(<svg.*?</svg>)", dom, re.S)


def _drawn(svg: str) -> bool:
    """An SVG that holds drawing: paths (bars, lines, cells) and text (ticks, labels)."""
    return svg.count("<path") >= 3 and "<text" in svg


def test_figures_as_files_and_a_page_with_nothing_external(store, tmp_path, capsys):
    insert_synthetic_run(store, n=30)
    other = store.create_run("other", "simulation", backend="openai", model="served",
                             mode="logprob", status="finished")
    store.upsert_records([{"run_id": other["id"], "question_id": q.id, "respondent": "served",
                           "respondent_kind": "model", "answer": "ABC"[i % 3], "method": "logprob"}
                          for i, q in enumerate(store.questions("test", limit=30))])
    store.close()
    db = ["--db", str(store.path)]
    page, folder = tmp_path / "out" / "r.html", tmp_path / "figs"
    assert main(db + ["report", "--html", str(page), "--figures", str(folder), "--from-run", RUN,
                      "--with", "other", "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    names = ["persona-similarity", "dimension-shares", "respondent-map", "model-similarity"]
    assert sorted(written["figures"]) == sorted(str(folder / f"{n}.{x}") for n in names
                                                for x in ("svg", "png"))
    for n in names:
        assert (folder / f"{n}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert _drawn((folder / f"{n}.svg").read_text())
    html = page.read_text()
    assert not EXTERNAL.search(html)
    assert len(_figures(html)) == len(names) and all(_drawn(s) for s in _figures(html))
    assert "Table 1" in html and "Table 2" not in html  # no training: no Table 2
    assert ">served<" in html and MODEL in html  # labelled by model, in the tables and map


def test_report_flags_that_need_each_other(store, capsys):
    insert_synthetic_run(store, n=10)
    store.close()
    db = ["--db", str(store.path)]
    assert main(db + ["report", "--with", RUN]) == 2
    assert "--with and --set go with --html" in capsys.readouterr().err
    assert main(db + ["report", "--html", "x.html"]) == 2  # no training, no --from-run
    assert "--from-run" in capsys.readouterr().err
    assert main(db + ["report", "--html", "x.html", "--set", "nope"]) == 4
    assert main(db + ["report", "--html", str(store.path.parent), "--from-run", RUN]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_table_two_shows_intervals_its_rows_carry():
    """Table 2 is printed from build_report's rows: a row's 95% interval (training.intervals'
    shape: a [low, high] per metric) sits under each figure, the seeds behind the row and the
    interval's kind beside it, and where it lies beyond DPO's interval; a field this module
    does not know that looks like an interval still gets a column of its own."""
    from fairpp_app.jobs.html_report import _table_two
    from fairpp_app.training import intervals

    slugs = ["a", "b"]
    per_seed = [{"target_similarity": v, "margin": m, "agreement": 0.4}
                for v, m in ((0.68, 0.18), (0.70, 0.20), (0.72, 0.22))]
    interval = intervals.seed_interval(per_seed)
    low, high = interval["target_similarity"]
    row = {"row": "WDPO", "source": "t1", "questions": 10, "similarity": {"a": 0.5, "b": 0.7},
           "target_similarity": 0.7, "margin": 0.2, "agreement": 0.4, "answers": None,
           "note": "", "seeds": [1, 2, 3], "interval": interval,
           "vs_dpo": {"target_similarity": 1, "margin": 0, "agreement": None},
           "vs_base": {"target_similarity": 0, "margin": 0, "agreement": None},
           "margin_spread": {"low": 0.1, "high": 0.3}}
    page = _table_two({"personas": slugs, "rows": [row], "split": "test", "from_run": "r",
                       "target": {"number": 2, "name": "B", "slug": "b"}}, {"a": "P1", "b": "P2"})
    assert f"[{low:.3f}, {high:.3f}]" in page
    m_low, m_high = interval["margin"]
    assert f"[{m_low * 100:+.2f}%, {m_high * 100:+.2f}%]" in page and "+20.00%" in page
    assert "3 (t)" in page
    assert "vs DPO: target similarity +" in page and "vs base: within" in page
    assert "<th>margin spread</th>" in page and "[0.100, 0.300]" in page


@needs_chromium
def test_chromium_notices_a_console_error(tmp_path):
    """The console check below is not blind: a page that throws is caught."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>notDefined()</script></body></html>")
    _, lines = chromium.dump_dom(page, tmp_path / "profile")
    assert any("Uncaught" in line and "notDefined" in line for line in lines)
    measured, lines = chromium.measure_figures(page, tmp_path / "profile")
    assert measured == [] and any("notDefined" in line for line in lines)  # framed pages too


@pytest.mark.model
@pytest.mark.timeout(900)
@needs_chromium
def test_report_of_a_position_call_and_a_training_in_chromium(store, slugs, tiny_dir, tmp_path,
                                                               monkeypatch, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    questions = store.questions("train", limit=N_TRAIN) + store.questions("test", limit=N_TEST)
    run = store.create_run(PERSONA_RUN, "import", status="finished")
    store.upsert_records(persona_records(store, run["id"], questions, slugs))
    store.close()
    db = ["--db", str(store.path)]
    assert main(db + ["position", "embedded", "--from-run", PERSONA_RUN, "--limit", str(N_TEST),
                      "--name", "solo", "--quiet"]) == 0
    assert main(db + ["train", "--method", "dpo", "--from-run", PERSONA_RUN, "--base", str(tiny_dir),
                      "--name", "tiny-dpo", "--max-steps", "2", "--eval-every", "1", "--eval-limit",
                      str(N_TEST), "--batch-size", "4", "--grad-accum", "1", "--quiet"]) == 0
    assert main(db + ["evaluate", "--adapter", "tiny-dpo", "--limit", str(N_TEST),
                      "--device", "cpu"]) == 0
    page = tmp_path / "report.html"
    capsys.readouterr()
    assert main(db + ["report", "--html", str(page), "--set", "solo", "--use", "tiny-dpo"]) == 0
    assert "6 figures" in capsys.readouterr().err

    html = page.read_text()
    assert not EXTERNAL.search(html)
    for shown in ("Table 1", "Table 2", "embedded", "gemma-3-270m", "tiny-dpo", "DPO", "fairpp"):
        assert shown in html
    from fairpp_app.store.database import Store

    with Store(store.path) as s:  # the header names the prompt template of every run
        for name in (PERSONA_RUN, s.get_position_set("solo")["models"][0]["run"]):
            phash = s.get_run(name)["prompt_hash"]
            assert phash is None or phash in html

    dom, console = chromium.dump_dom(page, tmp_path / "profile")
    assert console == []
    figures = _figures(dom)
    # Fig. 5, Fig. 3, Fig. 4, the models' bars, and the training's similarity and loss curves.
    assert len(figures) == 6 and all(_drawn(svg) for svg in figures)
    laid_out, console = chromium.measure_figures(page, tmp_path / "profile")
    assert console == [] and laid_out is not None and len(laid_out) == 6
    for figure in laid_out:  # each drew something of a visible size, on a visible canvas
        assert figure["width"] > 200 and figure["height"] > 100
        assert figure["drawn_width"] > 100 and figure["drawn_height"] > 50 and figure["shapes"] > 10
    shot = tmp_path / "report.png"
    assert chromium.screenshot(page, shot, tmp_path / "profile") == []
    print(f"screenshot: {shot}")
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    inked = sum(n for n, rgb in colours if sum(rgb) < 600)
    assert len(colours) > 200 and inked > 0.02 * image.width * image.height


def test_a_group_target_gets_its_own_line_in_the_training_figure():
    """A group target is no persona, yet its mixture is what the training aims at: the
    similarity figure draws it (bold, labelled as the target) beside every persona."""
    from fairpp_app.jobs import figures

    evals = [{"step": s, "similarity": {"p3": 0.5 + s / 100, "p6": 0.6, "p3-6": 0.55 + s / 50}}
             for s in (0, 5, 10)]
    drawn = figures.training_similarity("t", "t", evals, ["p3", "p6"], "p3-6",
                                        {"p3": "P3", "p6": "P6"})
    lines = drawn.figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["P3", "P6", "p3-6 (target)"]
    assert list(lines[2].get_ydata()) == [0.55, 0.65, 0.75]
    assert lines[2].get_linewidth() > lines[0].get_linewidth()
