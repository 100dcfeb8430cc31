"""Compare the runs of a sweep (or of an experiment) without the UI.

    python -m src.compare                       # the latest sweep in 'descent-lab'
    python -m src.compare --parent RUN_ID
    python -m src.compare --experiment lecture --uri sqlite:///mlruns/mlflow.db

Prints one row per run, sorted by final error: the overrides that differ
between the runs, status, final error, learned coefficients and duration.
Writes one PNG that overlays the error curves on a log scale, and logs it to
the parent run when there is one.
"""

import argparse
import math
import sys
from pathlib import Path
from typing import List, Optional

from src import PROJECT_ROOT
from src.store import StoreError, check_store, resolve_uri

SWEEP_TAG = "sweep.overrides"


def latest_parent(client, experiment_id: str):
    parents = client.search_runs([experiment_id], filter_string=f"tags.`{SWEEP_TAG}` != ''",
                                 order_by=["attributes.start_time DESC"], max_results=1)
    return parents[0] if parents else None


def sort_key(run):
    error = run.data.metrics.get("final_error")
    finished = run.info.status == "FINISHED" and error is not None
    return (0 if finished else 1, error if finished else math.inf)


def coefficient_text(run) -> str:
    names = sorted((key for key in run.data.metrics if key.startswith(("weight.", "bias."))),
                   key=lambda name: (name.startswith("bias."), name))
    return " ".join(f"{name}={run.data.metrics[name]:.4g}" for name in names)


def duration_s(run) -> Optional[float]:
    if run.info.end_time and run.info.start_time:
        return (run.info.end_time - run.info.start_time) / 1000
    return None


def format_table(runs: list, varied: List[str]) -> str:
    header = [*varied, "status", "final error", "coefficients", "duration"]
    rows = []
    for run in runs:
        from src.sweep import job_overrides

        overrides = job_overrides(run)
        error = run.data.metrics.get("final_error")
        seconds = duration_s(run)
        rows.append([
            *(overrides.get(key, "") for key in varied),
            run.info.status,
            f"{error:.6g}" if error is not None else "-",
            coefficient_text(run) or "-",
            f"{seconds:.1f} s" if seconds is not None else "-",
        ])
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in [header, ["-" * w for w in widths], *rows]]
    return "\n".join(lines)


def compare(uri: str, experiment_name: str, parent_id: Optional[str], output: Optional[Path],
            whole_experiment: bool = False) -> int:
    from mlflow import MlflowClient

    from src.plots import plot_error_curves
    from src.sweep import differing_overrides, find_children, job_overrides

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if parent_id:
        parent = client.get_run(parent_id)
        experiment_id = parent.info.experiment_id
    else:
        if experiment is None:
            print(f"No experiment named '{experiment_name}' in {uri}.", file=sys.stderr)
            return 2
        experiment_id = experiment.experiment_id
        parent = None if whole_experiment else latest_parent(client, experiment_id)

    if parent is not None:
        runs = find_children(client, experiment_id, parent.info.run_id)
        title = parent.info.run_name
    else:
        runs = [run for run in client.search_runs([experiment_id], max_results=50000)
                if SWEEP_TAG not in run.data.tags]
        title = f"experiment {experiment_name}"
    if not runs:
        print(f"No runs to compare in {title} ({uri}).", file=sys.stderr)
        return 2

    runs.sort(key=sort_key)
    varied = differing_overrides(runs)
    print(f"{title}: {len(runs)} runs, sorted by final error\n")
    print(format_table(runs, varied))

    curves = {}
    for run in runs:
        history = sorted(client.get_metric_history(run.info.run_id, "error"), key=lambda m: m.step)
        if history:
            overrides = job_overrides(run)
            label = " ".join(f"{k}={overrides[k]}" for k in varied if k in overrides) or run.info.run_name
            curves[label] = [metric.value for metric in history]
    name = parent.info.run_id if parent else f"experiment-{experiment_id}"
    output = output or PROJECT_ROOT / "mlruns" / "compare" / f"{name}-error_curves.png"
    output.parent.mkdir(parents=True, exist_ok=True)
    plot_error_curves(curves, output, f"error curves: {title}")
    print(f"\nError curves: {output}")
    if parent is not None:
        client.log_artifact(parent.info.run_id, str(output), artifact_path="compare")
        print(f"Logged to the parent run {parent.info.run_id} under compare/.")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--uri", help="tracking URI; default: MLFLOW_TRACKING_URI, else mlruns/mlflow.db")
    parser.add_argument("--experiment", default="descent-lab", help="experiment name (default: descent-lab)")
    parser.add_argument("--parent", help="the sweep's parent run id; default: the latest sweep")
    parser.add_argument("--all", action="store_true", help="compare every run of the experiment, not one sweep")
    parser.add_argument("--output", type=Path, help="where to write the PNG of the error curves")
    args = parser.parse_args(argv)

    uri = resolve_uri(args.uri)
    try:
        check_store(uri)
    except StoreError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    return compare(uri, args.experiment, args.parent, args.output, args.all)


if __name__ == "__main__":
    sys.exit(main())
