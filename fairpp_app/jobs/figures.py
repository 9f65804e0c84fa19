"""The paper's figures, drawn with matplotlib: one function per figure, SVG and PNG out.

matplotlib is the plotting library because it writes both formats the report needs from
one drawing, with no browser, no network and no JavaScript: the HTML report inlines the
SVG, ``--figures`` and the Analysis screen's figure key write SVG and PNG files. Figures
are made with ``matplotlib.figure.Figure`` and the Agg canvas, never pyplot, so drawing in
a TUI worker thread touches no global state and needs no display. Text stays text in the
SVG (``svg.fonttype = none``): the labels are searchable and the file small; each figure's
element ids are salted with its name so that several SVGs inline in one page never share
an id. Every function takes plain numbers (a ``Positioning``, event payloads) and returns
a Figure; ``svg()`` and ``png()`` serialise it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display, whatever MPLBACKEND says

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fairpp_app.core.metrics import MIN_SIMILARITY
from fairpp_app.core.questions import dimension_poles

#: Answer colours (A, B, C) and a colour-blind-safe cycle for respondents (Okabe-Ito).
LETTER_COLOURS = ("#0072B2", "#E69F00", "#999999")
CYCLE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
RC = {"svg.fonttype": "none", "font.size": 9, "axes.titlesize": 10, "axes.spines.top": False,
      "axes.spines.right": False}


@dataclass
class Drawn:
    """A figure with the name its files take and the caption the report prints under it."""

    name: str
    title: str
    figure: Figure


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def svg(drawn: Drawn) -> str:
    """The figure as an ``<svg>`` element (no XML prolog), ready to inline in HTML."""
    buf = io.StringIO()
    with matplotlib.rc_context({**RC, "svg.hashsalt": drawn.name}):
        drawn.figure.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def png(drawn: Drawn, dpi: int = 150) -> bytes:
    buf = io.BytesIO()
    with matplotlib.rc_context(RC):
        drawn.figure.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def write_files(drawn: Drawn, folder: Path, stem: str | None = None) -> list[Path]:
    """``folder/stem.svg`` and ``folder/stem.png``; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or drawn.name
    paths = [folder / f"{stem}.svg", folder / f"{stem}.png"]
    paths[0].write_text(svg(drawn), encoding="utf-8")
    paths[1].write_bytes(png(drawn))
    return paths


def heatmap(name: str, title: str, rows: Sequence[str], cols: Sequence[str],
            values: dict[str, dict[str, float | None]], labels: dict[str, str],
            vmin: float = MIN_SIMILARITY, vmax: float = 1.0) -> Drawn:
    """Rows x columns coloured by value, each cell printed (the paper's Fig. 5)."""
    import numpy as np

    with matplotlib.rc_context(RC):
        fig = _figure(1.6 + 0.75 * len(cols), 1.2 + 0.42 * len(rows))
        ax = fig.add_subplot()
        grid = np.array([[np.nan if values.get(r, {}).get(c) is None else values[r][c]
                          for c in cols] for r in rows], dtype=float).reshape(len(rows), len(cols))
        image = ax.imshow(grid, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(cols)), [labels.get(c, c) for c in cols], rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), [labels.get(r, r) for r in rows])
        middle = (vmin + vmax) / 2
        for i in range(len(rows)):
            for j in range(len(cols)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if grid[i, j] < middle else "black")
        ax.spines[:].set_visible(False)
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set_title(title)
    return Drawn(name, title, fig)


def similarity_bars(name: str, title: str, respondents: Sequence[str], personas: Sequence[str],
                    similarity: dict[str, dict[str, float | None]], labels: dict[str, str]) -> Drawn:
    """Each respondent's similarity to every persona, one bar group per persona (Table 1)."""
    import numpy as np

    with matplotlib.rc_context(RC):
        fig = _figure(max(5.0, 1.0 + 0.35 * len(personas) * max(1, len(respondents))), 3.2)
        ax = fig.add_subplot()
        width = 0.8 / max(1, len(respondents))
        x = np.arange(len(personas))
        for k, r in enumerate(respondents):
            vals = [similarity.get(r, {}).get(p) for p in personas]
            ax.bar(x + (k - (len(respondents) - 1) / 2) * width,
                   [np.nan if v is None else v for v in vals], width,
                   label=labels.get(r, r), color=CYCLE[k % len(CYCLE)])
        ax.set_xticks(x, [labels.get(p, p) for p in personas], rotation=30, ha="right")
        ax.set_ylim(MIN_SIMILARITY, 1.0)
        ax.set_ylabel("similarity (1 - JS distance)")
        fig.legend(fontsize=7, loc="outside right upper")
        ax.set_title(title)
    return Drawn(name, title, fig)


def dimension_shares(name: str, title: str, respondents: Sequence[str],
                     shares: dict[str, dict[int, tuple[float, float, float]]],
                     labels: dict[str, str]) -> Drawn:
    """A/B/C shares per dimension, one panel per dimension, one bar per respondent (Fig. 3)."""
    dims = sorted({d for r in respondents for d in shares.get(r, {})})
    with matplotlib.rc_context(RC):
        fig = _figure(2.2 * max(1, len(dims)) + 1.5, 1.0 + 0.28 * len(respondents))
        axes = fig.subplots(1, max(1, len(dims)), sharey=True, squeeze=False)[0]
        y = list(range(len(respondents)))
        for ax, d in zip(axes, dims):
            left = [0.0] * len(respondents)
            for i, letter in enumerate("ABC"):
                widths = [shares.get(r, {}).get(d, (0.0, 0.0, 0.0))[i] for r in respondents]
                ax.barh(y, widths, left=left, color=LETTER_COLOURS[i], label=letter, height=0.8)
                left = [a + b for a, b in zip(left, widths)]
            a, b = dimension_poles(d)
            ax.set_title(f"{d}: A {a} / B {b}", fontsize=8)
            ax.set_xlim(0, 1)
        axes[0].set_yticks(y, [labels.get(r, r) for r in respondents])
        axes[0].invert_yaxis()  # shared: the first respondent on top in every panel
        handles, names = axes[0].get_legend_handles_labels()
        fig.legend(handles, names, title="answer", fontsize=7, loc="outside right upper")
        fig.suptitle(title)
    return Drawn(name, title, fig)


def respondent_map(name: str, title: str, coords: dict[str, tuple[float, float]],
                   personas: Sequence[str], labels: dict[str, str],
                   explained: tuple[float, float]) -> Drawn:
    """Respondents on the first two principal axes of their answers (the paper's Fig. 4)."""
    with matplotlib.rc_context(RC):
        fig = _figure(6.0, 4.6)
        ax = fig.add_subplot()
        from fairpp_app.jobs.positioning import shared_point_labels

        labels = shared_point_labels(coords, labels)
        models = [r for r in coords if r not in personas]
        for group, marker, colour, label in (([p for p in personas if p in coords], "o",
                                              CYCLE[0], "persona"), (models, "^", CYCLE[1], "model")):
            if group:
                ax.scatter([coords[r][0] for r in group], [coords[r][1] for r in group], s=48,
                           marker=marker, color=colour, label=label, zorder=3)
                for r in (r for r in group if labels.get(r, r)):
                    ax.annotate(labels.get(r, r), coords[r], textcoords="offset points",
                                xytext=(5, 4), fontsize=7)
        ax.axhline(0, color="#ccc", lw=0.6, zorder=1)
        ax.axvline(0, color="#ccc", lw=0.6, zorder=1)
        ax.set_xlabel(f"PC1 ({explained[0] * 100:.0f}% of variance)")
        ax.set_ylabel(f"PC2 ({explained[1] * 100:.0f}% of variance)")
        ax.legend(fontsize=7)
        ax.set_title(title)
    return Drawn(name, title, fig)


def tier_bars(name: str, title: str, tiers: list[dict]) -> Drawn:
    """Questions per tier of the target persona, with each tier's weight."""
    with matplotlib.rc_context(RC):
        fig = _figure(5.0, 3.0)
        ax = fig.add_subplot()
        xs = [t["tier"] for t in tiers]
        bars = ax.bar(xs, [t["count"] for t in tiers], color=CYCLE[3])
        ax.bar_label(bars, [f"w {t['weight']:.2g}" for t in tiers], fontsize=7)
        ax.set_xlabel("tier (1 + personas answering differently)")
        ax.set_ylabel("questions")
        ax.set_title(title)
    return Drawn(name, title, fig)


def training_similarity(name: str, title: str, evals: list[dict], personas: Sequence[str],
                        target: str, labels: dict[str, str]) -> Drawn:
    """Similarity to every persona by training step, the target drawn bold. A group target
    (not itself a persona) gets a line of its own, the similarity to the group's mixture."""
    series = list(personas) + ([] if target in personas else [target])
    with matplotlib.rc_context(RC):
        fig = _figure(5.6, 3.2)
        ax = fig.add_subplot()
        steps = [e["step"] for e in evals]
        for k, p in enumerate(series):
            ys = [e.get("similarity", {}).get(p) for e in evals]
            ax.plot(steps, [float("nan") if v is None else v for v in ys], marker="o", ms=3,
                    lw=2.4 if p == target else 1.0, color=CYCLE[k % len(CYCLE)],
                    label=labels.get(p, p) + (" (target)" if p == target else ""))
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("similarity")
        fig.legend(fontsize=6, loc="outside right upper")
        ax.set_title(title)
    return Drawn(name, title, fig)


def loss_curve(name: str, title: str, steps: list[dict]) -> Drawn:
    """Training loss by step."""
    with matplotlib.rc_context(RC):
        fig = _figure(5.6, 2.8)
        ax = fig.add_subplot()
        ax.plot([s["step"] for s in steps], [s["loss"] for s in steps], color=CYCLE[1], lw=1.2,
                marker="." if len(steps) < 50 else None)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss")
        ax.set_title(title)
    return Drawn(name, title, fig)


def view_figure(pos, view: str, labels: dict[str, str], short: dict[str, str]) -> Drawn:
    """One Analysis view of a ``Positioning`` as its figure (the screen's figure key)."""
    name = f"{pos.run}-{pos.split}-{view}".replace("/", "-")
    where = f"{pos.run}, {pos.split} split"
    if view == "similarity":
        return heatmap(name, f"Persona × persona similarity ({where})", pos.personas, pos.personas,
                       pos.similarity, labels)
    if view == "agreement":
        return heatmap(name, f"Respondent × persona agreement ({where})", pos.respondents,
                       pos.personas, pos.agreement, {**labels, **short}, vmin=0.0)
    if view == "respondents":
        return similarity_bars(name, f"Similarity of each respondent to every persona ({where})",
                               pos.respondents, pos.personas, pos.similarity, {**labels, **short})
    if view == "dimensions":
        return dimension_shares(name, f"A/B/C shares per dimension ({where})", pos.respondents,
                                pos.shares, {**labels, **short})
    if view == "tiers":
        return tier_bars(name, f"Tiers of target {labels.get(pos.target, pos.target)} ({where})",
                         pos.tiers)
    if view == "map":
        return respondent_map(name, f"Respondents on two principal axes ({where})", pos.coords,
                              pos.personas, short, pos.explained)
    raise ValueError(f"no figure for view {view!r}")


def reference_figure(name: str, ref: dict, labels: dict[str, str]) -> Drawn:
    """Every respondent's similarity to every human segment with its 95% interval, one
    panel per segment; the segment's own persona drawn as a filled diamond
    (``survey.compare``'s dict: the Analysis screen's Reference view)."""
    segments = ref["segments"]
    respondents = ref["respondents"]
    title = (f"Similarity to the segments of survey {ref['survey']} "
             f"({ref['run']}, {ref['split']} split; 95% intervals)")
    with matplotlib.rc_context(RC):
        fig = _figure(1.6 + 2.2 * max(1, len(segments)), 1.2 + 0.3 * len(respondents))
        axes = fig.subplots(1, max(1, len(segments)), sharey=True, squeeze=False)[0]
        y = list(range(len(respondents)))
        for ax, seg in zip(axes, segments):
            for i, r in enumerate(respondents):
                c = ref["comparison"][r][seg["segment"]]
                if c["similarity"] is None:
                    continue
                lo, hi = c["similarity_ci"]
                own = r == seg["persona"]
                ax.errorbar(c["similarity"], i, xerr=[[c["similarity"] - lo], [hi - c["similarity"]]],
                            fmt="D" if own else "o", ms=6 if own else 4, capsize=2,
                            color=CYCLE[1] if own else CYCLE[0])
            ax.set_title(f"{seg['segment']}\n(persona {labels.get(seg['persona'], seg['persona'])})",
                         fontsize=8)
            ax.set_xlim(MIN_SIMILARITY, 1.0)
            ax.grid(axis="x", color="#eee", lw=0.6)
        axes[0].set_yticks(y, [labels.get(r, r) for r in respondents])
        axes[0].invert_yaxis()
        fig.supxlabel("similarity (1 - JS distance of mean shares)", fontsize=8)
        fig.suptitle(title)
    return Drawn(name, title, fig)


def consistency_figure(name: str, result: dict, labels: dict[str, str]) -> Drawn:
    """Per respondent, the share of answers kept under each consistency check and its
    distance from uniform (``run_metrics``'s figures: the Analysis screen's Consistency view)."""
    import numpy as np

    respondents = [*result["respondents"], *(r for r in result["consistency"]
                                             if r not in result["respondents"])]
    checks = [k for k in ("order", "framing", "wording")
              if any((result["consistency"].get(r) or {}).get(k) for r in respondents)]
    title = f"Answer consistency ({result['run']}, {result['split']} split)"

    def value(figures: dict | None, key: str) -> float:
        v = (figures or {}).get(key)
        return np.nan if v is None else v

    with matplotlib.rc_context(RC):
        fig = _figure(8.0, 1.2 + 0.3 * len(respondents))
        kept, uniform = fig.subplots(1, 2, sharey=True, width_ratios=(3, 2))
        y = np.arange(len(respondents))
        height = 0.8 / max(1, len(checks))
        for k, check in enumerate(checks):
            kept.barh(y + (k - (len(checks) - 1) / 2) * height,
                      [value(result["consistency"].get(r, {}).get(check), "share")
                       for r in respondents], height, color=CYCLE[k], label=check)
        kept.set_xlim(0, 1)
        kept.set_xlabel("share of answers kept")
        # Below each panel's axis label (about half an inch down): any bar may reach the edge.
        below = {"fontsize": 7, "loc": "upper center", "frameon": False,
                 "bbox_to_anchor": (0.5, -0.55 / (0.3 * len(respondents) + 0.6))}
        if checks:
            kept.legend(ncol=len(checks), **below)
        kept.set_yticks(y, [labels.get(r, r) for r in respondents])
        kept.invert_yaxis()
        for k, (key, label) in enumerate((("shares", "answer shares"),
                                          ("probabilities", "probabilities"))):
            uniform.barh(y + (k - 0.5) * 0.4,
                         [value(result["uniform_distance"].get(r), key) for r in respondents],
                         0.4, color=CYCLE[4 + k], label=label)
        uniform.set_xlabel("JS distance from uniform")
        uniform.legend(ncol=2, **below)
        fig.suptitle(title)
    return Drawn(name, title, fig)
