"""Whole-process wall time of `python -m src.train task=sum` against the
lecture's cell 157 as a bare script (benchmarks/lecture_cell157.py), with
the import costs that explain the difference.

    python benchmarks/process.py [--repeats 5] [--no-write]

Every command runs once per round, all rounds back to back, so each ratio
compares runs that saw the same machine load. The tracked runs write to a
temporary SQLite store (migrated by the warm-up round) and leave the
project's mlruns/ alone. Takes 3-4 minutes on a busy 2-core machine.
"""

import argparse
import subprocess
import sys
import time

from common import (
    fmt, interleaved, markdown_table, median, paired_ratios, run_command, section_header,
    shell_line, spread, store_overrides, temporary_store, verdict, write_section, PROJECT_ROOT,
)

PYTHON = sys.executable
TARGET = 1.5


def run_parallel(first, second) -> float:
    """Start two commands at once; return the wall time until both ended."""
    start = time.perf_counter()
    processes = [subprocess.Popen(argv, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL)
                 for argv in (first, second)]
    codes = [process.wait() for process in processes]
    if any(codes):
        raise RuntimeError(f"A parallel import failed with exit status {codes}.")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--no-write", action="store_true", help="print the table without rewriting docs/benchmarks.md")
    args = parser.parse_args()

    with temporary_store() as folder:
        store = store_overrides(folder)
        import_torch = [PYTHON, "-c", "import torch"]
        import_tracking = [PYTHON, "-c", "import mlflow, mlflow.store.tracking.sqlalchemy_store"]
        rows = {
            "bare": ("lecture cell 157, bare (reference)",
                     [PYTHON, "benchmarks/lecture_cell157.py"]),
            "train": ("train, tracked", [PYTHON, "-m", "src.train", "task=sum", *store]),
            "untracked": ("train, tracking.enabled=false",
                          [PYTHON, "-m", "src.train", "task=sum", "tracking.enabled=false", *store[1:]]),
            "torch": ("import torch", import_torch),
            "tracking": ("import mlflow and its SQL store", import_tracking),
            "matplotlib": ("import matplotlib.figure", [PYTHON, "-c", "import matplotlib.figure"]),
            "floor": ("all imports of a tracked run, exit as src.train does", [PYTHON, "-c", (
                "import atexit, gc, torch, hydra, mlflow, mlflow.store.tracking.sqlalchemy_store, "
                "matplotlib.figure; atexit.register(gc.freeze)")]),
        }
        commands = {key: (lambda argv=argv: run_command(argv)) for key, (_, argv) in rows.items()}
        commands["parallel"] = lambda: run_parallel(import_torch, import_tracking)
        print(f"Timing {len(commands)} commands, {args.repeats} rounds after one warm-up round.",
              file=sys.stderr)
        times = interleaved(commands, args.repeats)

    labels = {key: label for key, (label, _) in rows.items()}
    labels["parallel"] = "import torch and import mlflow in two processes at once"
    command_text = {key: shell_line(argv) for key, (_, argv) in rows.items()}
    command_text["train"] = "python -m src.train task=sum tracking.uri=sqlite:///TMP/mlflow.db ..."
    command_text["untracked"] = "python -m src.train task=sum tracking.enabled=false ..."
    command_text["parallel"] = "the two imports above, started together"

    table_rows = []
    for key in ("bare", "train", "untracked", "torch", "tracking", "matplotlib", "floor", "parallel"):
        ratios = paired_ratios(times, key, "bare")
        table_rows.append([labels[key], f"`{command_text[key]}`", fmt(median(times[key])),
                           spread(times[key]), fmt(median(ratios)), spread(ratios)])
    table = markdown_table(
        ["what", "command", "wall s (median)", "wall s (min-max)", "x bare (median)", "x bare (min-max)"],
        table_rows)

    train_ratio = median(paired_ratios(times, "train", "bare"))
    untracked_ratio = median(paired_ratios(times, "untracked", "bare"))
    overhead = [a - b for a, b in zip(times["train"], times["untracked"])]
    body = (
        section_header("python benchmarks/process.py")
        + f"Rounds: {args.repeats}, after one warm-up round. `TMP` is a temporary folder; "
          f"`...` stands for the overrides that put Hydra's job folders there too.\n\n"
        + table + "\n\n"
        + f"- Target, tracked run within {TARGET}x of the bare script: {fmt(train_ratio)}x, "
          f"{verdict(train_ratio <= TARGET)}.\n"
        + f"- Tracking off: {fmt(untracked_ratio)}x of the bare script.\n"
        + f"- Tracking overhead per run, whole process (tracked minus tracking off): "
          f"{fmt(median(overhead))} s (min-max {spread(overhead)}).\n"
    )
    write_section("process", body, write=not args.no_write)


if __name__ == "__main__":
    main()
