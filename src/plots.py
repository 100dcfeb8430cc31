"""PNG plots of error curves, drawn with matplotlib's Agg renderer.

matplotlib is imported by the first plot, not with this module, because the
import takes about 0.6 s on a 2-core CPU and a run with tracking off draws
nothing. The figure is built without pyplot, so no global figure state is
kept between the runs of a sweep.
"""

from pathlib import Path
from typing import Dict, List, Sequence


def plot_error_curves(curves: Dict[str, Sequence[float]], path: Path, title: str,
                      dashed: Sequence[str] = ()) -> Path:
    """Draw one line per curve, error on a log scale, epochs on the x axis.

    Curves named in `dashed` (a prediction, say) are drawn dashed and under
    the others, so a curve they match stays visible.
    """
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter, NullLocator

    with_legend = 1 < len(curves) <= 30
    # A few curves keep their legend inside the axes; more get a column beside.
    legend_beside = len(curves) > 3
    figure = Figure(figsize=(10 if with_legend and legend_beside else 7, 4.5), dpi=100)
    axes = figure.add_subplot()
    # Past ten curves the default colour cycle repeats; a colour map keeps
    # every curve apart.
    colours = matplotlib.colormaps["viridis"](
        [i / max(len(curves) - 1, 1) for i in range(len(curves))]
    ) if len(curves) > 10 else [None] * len(curves)
    low, high = float("inf"), 0.0
    for (label, errors), colour in zip(curves.items(), colours):
        # A log axis cannot show zero; an exact fit reads as the smallest
        # positive float32 instead.
        values: List[float] = [max(e, 1e-38) for e in errors]
        if label in dashed:
            axes.plot(range(len(values)), values, label=label, color=colour or "0.35",
                      linestyle="--", linewidth=1.2, zorder=1)
        else:
            axes.plot(range(len(values)), values, label=label, color=colour, zorder=2,
                      marker="." if len(values) <= 60 else None)
        if values:
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
    axes.set_title(title if len(title) <= 80 else title[:77] + "...", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    # Fixed margins: tight_layout measures every text and costs about 0.4 s
    # a plot, which a sweep pays per job.
    if with_legend and legend_beside:
        axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        figure.subplots_adjust(left=0.08, right=0.68, top=0.92, bottom=0.12)
    elif with_legend:
        axes.legend(fontsize=8, loc="upper right")
        figure.subplots_adjust(left=0.12, right=0.96, top=0.92, bottom=0.12)
    else:
        figure.subplots_adjust(left=0.12, right=0.96, top=0.92, bottom=0.12)
    figure.savefig(path)
    return path
