"""PNG plots of error curves, drawn with matplotlib's Agg renderer.

matplotlib is imported by the first plot, not with this module, because the
import takes about 0.6 s on a 2-core CPU and a run with tracking off draws
nothing. The figure is built without pyplot, so no global figure state is
kept between the runs of a sweep.
"""

from pathlib import Path
from typing import Dict, List, Sequence


def plot_error_curves(curves: Dict[str, Sequence[float]], path: Path, title: str) -> Path:
    """Draw one line per curve, error on a log scale, epochs on the x axis."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter, NullLocator

    figure = Figure(figsize=(7, 4.5), dpi=100)
    axes = figure.add_subplot()
    low, high = float("inf"), 0.0
    for label, errors in curves.items():
        # A log axis cannot show zero; an exact fit reads as the smallest
        # positive float32 instead.
        values: List[float] = [max(e, 1e-38) for e in errors]
        axes.plot(range(len(values)), values, label=label, marker="." if len(values) <= 60 else None)
        low, high = min(low, *values), max(high, *values)
    axes.set_yscale("log")
    if high > 1000 * low:
        # Over more than three decades matplotlib draws 8 minor ticks per
        # decade, and their artists took more than half of the plot's time.
        axes.yaxis.set_minor_locator(NullLocator())
    # Plain tick labels such as 1e-05, because typesetting the default
    # mathtext labels took about 50 ms per plot.
    axes.yaxis.set_major_formatter(LogFormatter())
    axes.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    axes.set_xlabel("epoch")
    axes.set_ylabel("error (mean squared)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    if 1 < len(curves) <= 20:
        axes.legend(fontsize=8)
    # Fixed margins that fit these labels. tight_layout took 0.3 s per plot,
    # most of the plot's time.
    figure.subplots_adjust(left=0.12, right=0.97, bottom=0.11, top=0.93)
    figure.savefig(path)
    return path
