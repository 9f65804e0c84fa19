"""Plots drawn with textual-plotext: the respondent map and training curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from textual_plotext import PlotextPlot

PERSONA_MARKER = "●"
MODEL_MARKER = "◆"


class RespondentMap(PlotextPlot):
    """Respondents as labelled points on the first two principal axes."""

    def show(self, coords: Mapping[str, tuple[float, float]], labels: Mapping[str, str],
             personas: Sequence[str], explained: tuple[float, float]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("Respondents by their answers (PCA of one-hot answers)")
        plt.xlabel(f"axis 1 ({explained[0]:.0%} of variance)")
        plt.ylabel(f"axis 2 ({explained[1]:.0%})")
        if coords:
            xs = [x for x, _ in coords.values()]
            ys = [y for _, y in coords.values()]
            # Room on the right for the names, which start at their point.
            span_x = (max(xs) - min(xs)) or 1.0
            span_y = (max(ys) - min(ys)) or 1.0
            plt.xlim(min(xs) - 0.05 * span_x, max(xs) + 0.35 * span_x)
            plt.ylim(min(ys) - 0.1 * span_y, max(ys) + 0.1 * span_y)
        for name, (x, y) in coords.items():
            marker = PERSONA_MARKER if name in personas else MODEL_MARKER
            colour = "cyan" if name in personas else "orange"
            # The scatter sets the axes' range; the text (marker + name) is what shows.
            plt.scatter([x], [y], marker=marker, color=colour)
            # Long enough for "a = b" labels of models that answered alike; the x range above
            # leaves room for them at 80 columns.
            plt.text(marker + labels.get(name, name)[:24], x, y, alignment="left", color=colour)
        self.refresh()


class LineChart(PlotextPlot):
    """One or more series against a shared x axis (training loss, similarity...)."""

    def show(self, title: str, series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
             xlabel: str = "step", highlight: str | None = None) -> None:
        """Draw every series; ``highlight`` names one drawn last, bold and labelled as such."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        plt.xlabel(xlabel)
        for name, (xs, ys) in series.items():
            if xs and name != highlight:
                plt.plot(list(xs), list(ys), label=name, marker="braille")
        if highlight in series and series[highlight][0]:
            xs, ys = series[highlight]
            plt.plot(list(xs), list(ys), label=f"{highlight} (target)", marker="hd",
                     color="red+")
        self.refresh()
