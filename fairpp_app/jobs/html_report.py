"""The shareable report: one HTML file with Tables 1 and 2 and the paper's figures.

The page is self-contained so that it can be mailed or attached to a paper review: styles
inline, figures as inline SVG from ``figures``, no script, no font or image fetched from
anywhere. The data behind it is named in a header (runs, models, prompt hashes, fairpp
version), so a reader can tell two reports apart. Table 2 arrives as the rows of
``training.report.build_report`` (the CLI builds them; this layer may not import training)
and is printed as given: fields this module does not know, such as intervals added by the
alignment work, are shown when they look like an interval (a pair of numbers, or a mapping
with low/high).
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path

from fairpp_app.core.personas import Persona
from fairpp_app.jobs import figures
from fairpp_app.jobs.position_sets import ModelRow
from fairpp_app.jobs.positioning import Positioning
from fairpp_app.store.database import Store

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;
padding:0 1rem;color:#222}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6rem 0;font-variant-numeric:tabular-nums}
th,td{padding:.2rem .55rem;border-bottom:1px solid #eee;text-align:right}
th:first-child,td:first-child,td.text{text-align:left}th{background:#f6f6f6}
td.best{font-weight:700}td.note{color:#777;text-align:left;font-size:.9em}
figure{margin:1.2rem 0}figure svg{max-width:100%;height:auto}figcaption{color:#555;font-size:.9em}
dl{display:grid;grid-template-columns:max-content auto;gap:.15rem 1rem}dt{color:#666}dd{margin:0}
.muted{color:#777}
"""


@dataclass
class TrainingCurves:
    name: str
    method: str
    target: str
    steps: list[dict] = field(default_factory=list)  # train_step payloads
    evals: list[dict] = field(default_factory=list)  # train_eval payloads


def training_curves(store: Store, names: list[str]) -> list[TrainingCurves]:
    """Loss and similarity by step of each training, replayed from the events table."""
    out = []
    for name in dict.fromkeys(names):
        t = store.get_training(name)
        curves = TrainingCurves(name, t["method"], t["target"])
        for e in store.events(training_id=t["id"]):
            if e["kind"] == "train_step":
                curves.steps.append(e["payload"])
            elif e["kind"] == "train_eval":
                curves.evals.append(e["payload"])
        out.append(curves)
    return out


def persona_labels(personas: list[Persona]) -> dict[str, str]:
    return {p.slug: f"P{p.number} {p.name}" for p in personas}


def draw_figures(pos: Positioning, personas: list[Persona], models: list[str],
                 curves: list[TrainingCurves]) -> list[figures.Drawn]:
    """Every figure of the report, in page order."""
    labels = persona_labels(personas)
    short = {p.slug: f"P{p.number}" for p in personas}
    out = [figures.heatmap("persona-similarity", "Persona × persona similarity (Fig. 5)",
                           pos.personas, pos.personas, pos.similarity, labels),
           figures.dimension_shares("dimension-shares", "A/B/C shares per dimension (Fig. 3)",
                                    pos.respondents, pos.shares, {**labels, **short}),
           figures.respondent_map("respondent-map", "Respondents on the first two principal "
                                  "axes of their answers (Fig. 4)", pos.coords, pos.personas,
                                  short, pos.explained)]
    if models:
        out.append(figures.similarity_bars("model-similarity", "Each model's similarity to "
                                           "every persona (Table 1)", models, pos.personas,
                                           pos.similarity, short))
    for c in curves:
        if c.evals:
            out.append(figures.training_similarity(
                f"training-{c.name}-similarity", f"{c.name} ({c.method}): similarity to every "
                "persona by step", c.evals, pos.personas or [p.slug for p in personas], c.target,
                short))
        if c.steps:
            out.append(figures.loss_curve(f"training-{c.name}-loss",
                                          f"{c.name} ({c.method}): loss by step", c.steps))
    return out


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _num(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _interval(value) -> str | None:
    """An interval-looking value as text, else None."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) for v in value):
        return f"[{value[0]:.3f}, {value[1]:.3f}]"
    if isinstance(value, dict):
        lo = value.get("low", value.get("lo", value.get("lower")))
        hi = value.get("high", value.get("hi", value.get("upper")))
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
            return f"[{lo:.3f}, {hi:.3f}]"
    return None


def _header(info: dict) -> str:
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in info["facts"].items())
    runs = "".join(
        f"<tr><td>{_e(r['role'])}</td><td class=text>{_e(r['name'])}</td><td class=text>"
        f"{_e(r['engine'])}</td><td class=text>{_e(r['mode'])}</td>"
        f"<td class=text><code>{_e(r['prompt_hash'])}</code></td><td>{r['records']:,}</td></tr>"
        for r in info["runs"])
    return (f"<dl>{rows}</dl><table><tr><th>role</th><th>run</th><th>backend/model</th>"
            f"<th>mode</th><th>prompt hash</th><th>records</th></tr>{runs}</table>")


def _table_one(rows: list[ModelRow], slugs: list[str], short: dict[str, str]) -> str:
    head = "".join(f"<th>{_e(short.get(s, s))}</th>" for s in slugs)
    body = []
    for r in rows:
        best = r.similarity.get(r.closest) if r.closest else None
        cells = "".join(
            f"<td class=best>{_num(v)}</td>" if v is not None and v == best else f"<td>{_num(v)}</td>"
            for v in (r.similarity.get(s) for s in slugs))
        body.append(f"<tr><td>{_e(r.label)}</td>{cells}<td>{_e(short.get(r.closest, '–'))}</td>"
                    f"<td>{_num(r.margin)}</td><td>{_num(r.agreement_closest)}</td>"
                    f"<td>{r.questions:,}</td><td class=note>{_e(r.run)} {_e(r.error)}</td></tr>")
    return (f"<table><tr><th>model</th>{head}<th>closest</th><th>margin</th><th>agree</th>"
            f"<th>n</th><th>run</th></tr>{''.join(body)}</table>"
            "<p class=muted>similarity = 1 − JS distance of A/B/C shares; margin = closest minus "
            "second; agree = per-question agreement with the closest persona; n = questions.</p>")


_KNOWN = {"row", "source", "questions", "similarity", "target_similarity", "margin", "agreement",
          "answers", "note", "method", "trainings", "seeds", "per_seed", "interval", "vs_dpo",
          "vs_base"}
def _with_interval(row: dict, key: str, text: str, percent: bool = False) -> str:
    """A cell's value with its interval below it, when the row carries one (the alignment
    report's ``interval``: a [low, high] per metric)."""
    bounds = (row.get("interval") or {}).get(key)
    if not bounds or None in bounds:
        return text
    lo, hi = bounds
    span = f"{lo * 100:+.2f}%, {hi * 100:+.2f}%" if percent else f"{lo:.3f}, {hi:.3f}"
    return f"{text}<br><small>[{span}]</small>"


def _marks(row: dict) -> str:
    """Per reference (DPO, base), the metrics whose interval lies wholly above (+) or below
    (-) the reference's; "within" when every interval overlaps."""
    out = []
    for name, key in (("DPO", "vs_dpo"), ("base", "vs_base")):
        got = row.get(key) or {}
        signs = {k: v for k, v in got.items() if v}
        if signs:
            out.append(f"vs {name}: " + ", ".join(f"{k.replace('_', ' ')} {'+' if v > 0 else '-'}"
                                                  for k, v in signs.items()))
        elif got:
            out.append(f"vs {name}: within")
    return "; ".join(out)


def _table_two(report: dict, short: dict[str, str]) -> str:
    slugs = report["personas"]
    extra = [k for k in dict.fromkeys(k for row in report["rows"] for k in row)
             if k not in _KNOWN and any(_interval(row.get(k)) or isinstance(row.get(k), (int, float))
                                        for row in report["rows"])]
    head = "".join(f"<th>{_e(short.get(s, s))}</th>" for s in slugs)
    head += "<th>target</th><th>margin</th><th>agree</th><th>n</th><th>seeds</th>"
    head += "".join(f"<th>{_e(k.replace('_', ' '))}</th>" for k in extra)
    head += "<th>beyond the intervals</th><th>source</th>"
    body = []
    for row in report["rows"]:
        cells = "".join(f"<td>{_num(row['similarity'].get(s))}</td>" for s in slugs)
        margin = "–" if row["margin"] is None else f"{row['margin'] * 100:+.2f}%"
        more = ""
        for k in extra:
            v = row.get(k)
            more += f"<td>{_e(_interval(v) or (_num(v) if isinstance(v, float) else v))}</td>"
        kind = (row.get("interval") or {}).get("kind")
        seeds = len(row.get("seeds") or []) or "–"
        body.append(f"<tr><td>{_e(row['row'])}</td>{cells}<td class=best>"
                    f"{_with_interval(row, 'target_similarity', _num(row['target_similarity']))}</td>"
                    f"<td>{_with_interval(row, 'margin', margin, percent=True)}</td>"
                    f"<td>{_with_interval(row, 'agreement', _num(row['agreement']))}</td>"
                    f"<td>{row['questions'] or '–'}</td><td>{seeds}{f' ({kind})' if kind else ''}"
                    f"</td>{more}<td class=note>{_e(_marks(row))}</td>"
                    f"<td class=note>{_e(row['source'])} {_e(row['note'])}</td></tr>")
    t = report["target"]
    return (f"<p>Target persona {t['number']} ({_e(t['name'])}), {_e(report['split'])} split, "
            f"personas from <code>{_e(report['from_run'])}</code>. Below each figure: its 95% "
            "interval (where a row has several seeds, a t-interval over them widened to cover a "
            "bootstrap of their mean over the questions; else the bootstrap alone); a row is "
            "above or below DPO or base only where the intervals do not overlap.</p>"
            f"<table><tr><th></th>{head}</tr>{''.join(body)}</table>")


def render(info: dict, rows: list[ModelRow], pos: Positioning, personas: list[Persona],
           table_two: dict | None, drawn: list[figures.Drawn]) -> str:
    """The whole page as one string."""
    short = {p.slug: f"P{p.number}" for p in personas}
    parts = ["<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
             "<meta name=viewport content='width=device-width,initial-scale=1'>",
             f"<title>{_e(info['title'])}</title><style>{CSS}</style></head><body>",
             f"<h1>{_e(info['title'])}</h1>", _header(info)]
    if rows:
        parts += ["<h2>Table 1: models among the personas</h2>",
                  _table_one(rows, pos.personas, short)]
    if table_two is not None:
        parts += ["<h2>Table 2: alignment toward one persona</h2>", _table_two(table_two, short)]
    parts.append("<h2>Figures</h2>")
    for d in drawn:
        parts.append(f"<figure id='{_e(d.name)}'>{figures.svg(d)}<figcaption>{_e(d.title)}"
                     "</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def report_info(store: Store, persona_run: str, rows: list[ModelRow], split: str,
                trainings: list[str], version: str) -> dict:
    """The header: what the report was made from."""
    runs = []
    counts = {r["name"]: r["records"] for r in store.list_runs()}
    for role, name in [("personas", persona_run), *(("model " + r.label, r.run) for r in rows if r.run)]:
        run = store.get_run(name)
        # An imported run has no backend: its kind says where the answers came from.
        engine = f"{run['backend']}/{run['model']}" if run["backend"] else run["kind"]
        runs.append({"role": role, "name": name, "engine": engine,
                     "mode": run["mode"], "prompt_hash": run["prompt_hash"],
                     "records": counts.get(name, 0)})
    facts = {"fairpp": version, "made": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
             "split": split, "models": ", ".join(r.label for r in rows) or "none",
             "trainings": ", ".join(trainings) or "none"}
    return {"title": f"Fair-PP report: {persona_run}", "facts": facts, "runs": runs}


def write_report(path: Path, page: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a page
    return path
