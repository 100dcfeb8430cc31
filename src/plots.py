"""PNG plots of error curves, drawn with matplotlib's file-only Agg backend."""

from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_error_curves(curves: Dict[str, Sequence[float]], path: Path, title: str) -> Path:
    """Draw one line per curve, error on a log scale, epochs on the x axis."""
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=100)
    for label, errors in curves.items():
        # A log axis cannot show zero; an exact fit reads as the smallest
        # positive float32 instead.
        values: List[float] = [max(e, 1e-38) for e in errors]
        axes.plot(range(len(values)), values, label=label, marker="." if len(values) <= 60 else None)
    axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel("error (mean squared)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    if 1 < len(curves) <= 20:
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
