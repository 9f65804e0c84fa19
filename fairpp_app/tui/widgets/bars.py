"""Bars and colour scales drawn with Unicode block characters, as Rich text.

These are renderables, not widgets, so a DataTable cell, a Static and an exported
screenshot all show the same thing.
"""

from __future__ import annotations

from rich.color import Color
from rich.style import Style
from rich.text import Text

EIGHTHS = " ▏▎▍▌▋▊▉█"
LETTER_COLOURS = {"A": "#4e9be6", "B": "#e8a33d", "C": "#9a9a9a"}
# Three stops of a perceptually even scale (viridis): low, middle, high.
SCALE = ((0x44, 0x01, 0x54), (0x21, 0x91, 0x8c), (0xfd, 0xe7, 0x25))


def bar(value: float | None, width: int = 10, lo: float = 0.0, hi: float = 1.0,
        style: str = "") -> Text:
    """A horizontal bar for ``value`` in [lo, hi], ``width`` cells, eighth-cell precise."""
    if value is None:
        return Text("·" * width, style="dim")
    t = 0.0 if hi <= lo else min(1.0, max(0.0, (value - lo) / (hi - lo)))
    eighths = round(t * width * 8)
    full, part = divmod(eighths, 8)
    body = "█" * full + (EIGHTHS[part] if part else "")
    return Text(body.ljust(width), style=style)


def prob_bars(probs: tuple[float | None, float | None, float | None], width: int = 3) -> Text:
    """A/B/C probability bars side by side, each with its figure: ``A██▌0.82 B▏ 0.06 ...``
    (a bar a few cells wide cannot tell 0.45 from 0.6 by itself)."""
    out = Text()
    for letter, p in zip("ABC", probs):
        out.append(letter, style="bold")
        out.append_text(bar(p, width, style=LETTER_COLOURS[letter]))
        out.append("-.--" if p is None else f"{p:.2f}", style=LETTER_COLOURS[letter])
        out.append(" ")
    return out


def stacked(shares: tuple[float, float, float], width: int = 24) -> Text:
    """One bar split into A, B and C segments in proportion to the shares."""
    cells = [round(s * width) for s in shares]
    cells[-1] = max(0, width - cells[0] - cells[1])
    out = Text()
    for letter, n in zip("ABC", cells):
        out.append("█" * n, style=LETTER_COLOURS[letter])
    return out


def heat_colour(value: float, lo: float, hi: float) -> Color:
    t = 0.0 if hi <= lo else min(1.0, max(0.0, (value - lo) / (hi - lo)))
    (a, b), u = ((SCALE[0], SCALE[1]), t * 2) if t < 0.5 else ((SCALE[1], SCALE[2]), t * 2 - 1)
    return Color.from_rgb(*(x + (y - x) * u for x, y in zip(a, b)))


def heat_cell(value: float | None, lo: float, hi: float, digits: int = 3) -> Text:
    """A table cell coloured by its value, with a text colour that stays readable."""
    if value is None:
        return Text("  -  ", style="dim", justify="center")
    bg = heat_colour(value, lo, hi)
    t = 0.0 if hi <= lo else (value - lo) / (hi - lo)
    fg = Color.parse("black") if t > 0.55 else Color.parse("white")
    return Text(f" {value:.{digits}f} ", style=Style(color=fg, bgcolor=bg), justify="center")


def legend(lo: float, hi: float, width: int = 20) -> Text:
    out = Text(f"{lo:.2f} ")
    for i in range(width):
        out.append(" ", style=Style(bgcolor=heat_colour(lo + (hi - lo) * i / (width - 1), lo, hi)))
    out.append(f" {hi:.2f}")
    return out
