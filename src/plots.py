"""PNG plots of error curves, drawn with matplotlib's file-only Agg backend."""

from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_error_curves(curves: Dict[str, Sequence[float]], path: Path, title: str) -> Path:
    """Draw one line per curve, error on a log scale, epochs on the x axis."""
    with_legend = 1 < len(curves) <= 30
    figure, axes = plt.subplots(figsize=(10 if with_legend else 7, 4.5), dpi=100)
    # Past ten curves the default colour cycle repeats; a colour map keeps
    # every curve apart.
    colours = plt.cm.viridis([i / max(len(curves) - 1, 1) for i in range(len(curves))]) \
        if len(curves) > 10 else [None] * len(curves)
    for (label, errors), colour in zip(curves.items(), colours):
        # A log axis cannot show zero; an exact fit reads as the smallest
        # positive float32 instead.
        values: List[float] = [max(e, 1e-38) for e in errors]
        axes.plot(range(len(values)), values, label=label, color=colour,
                  marker="." if len(values) <= 60 else None)
    axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel("error (mean squared)")
    axes.set_title(title if len(title) <= 80 else title[:77] + "...", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    # Fixed margins: tight_layout measures every text and costs about 0.4 s
    # a plot, which a sweep pays per job.
    if with_legend:
        axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        figure.subplots_adjust(left=0.08, right=0.68, top=0.92, bottom=0.12)
    else:
        figure.subplots_adjust(left=0.12, right=0.96, top=0.92, bottom=0.12)
    figure.savefig(path)
    plt.close(figure)
    return path
