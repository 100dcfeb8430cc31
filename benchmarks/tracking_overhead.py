"""Tracking overhead per run, and store round trips per run at 10, 100, 450
and 2500 epochs.

    python benchmarks/tracking_overhead.py [--repeats 7] [--no-write]

Both parts run jobs in this process, as the basic launcher does, so the
imports are paid once and the figure is what tracking adds to each run:
the job (task=sum) with tracking into a temporary SQLite store against the
same job with tracking.enabled=false, back to back in each round.

A round trip is one call to a public method of MLflow's tracking store that
is not made from inside another one. With `tracking.uri=http://...` each
would be one request to the server. Artifact files are counted apart; run in
this process, a job has no Hydra files (.hydra/, train.log) to upload.
Takes about 1 minute on 2 cores.
"""

import argparse
import functools
import inspect
import sys
from collections import Counter
from pathlib import Path
from typing import List

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from common import (
    PROJECT_ROOT, fmt, interleaved, markdown_table, median, paired_ratios, section_header, spread,
    temporary_store, time_call, verdict, write_section,
)

EPOCH_COUNTS = (10, 100, 450, 2500)
# MLflow takes at most 1000 metrics per log_batch request, so a run with more
# per-epoch values than that needs more than one request however it batches.
# Each epoch logs two values, `error` and the theory's `error_predicted`.
MAX_EPOCHS_ONE_BATCH = 450


def run_job(overrides: List[str], output_dir: Path) -> float:
    """Run src.train.main in this process with Hydra's runtime fields set, as
    the basic launcher would; return the final error."""
    import src.train
    from src.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.name = "train"
    HydraConfig.instance().set_config(cfg)
    job_cfg = cfg.copy()
    with open_dict(job_cfg):
        del job_cfg["hydra"]
    return src.train.main(job_cfg)


class StoreCalls:
    """Count the outermost calls to the public methods of MLflow's SQL store."""

    def __init__(self) -> None:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        self.counts: Counter = Counter()
        self.depth = 0
        for name, attribute in vars(SqlAlchemyStore).items():
            if isinstance(attribute, (staticmethod, classmethod, property)):
                continue
            if inspect.isfunction(attribute) and (not name.startswith("_") or name == "__init__"):
                setattr(SqlAlchemyStore, name, self._counted(name, attribute))

    def _counted(self, name, function):
        @functools.wraps(function)
        def counted(*args, **kwargs):
            if self.depth == 0:
                self.counts["open store" if name == "__init__" else name] += 1
            self.depth += 1
            try:
                return function(*args, **kwargs)
            finally:
                self.depth -= 1
        return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--no-write", action="store_true", help="print the table without rewriting docs/benchmarks.md")
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)  # the jobs' epoch lines stay quiet
    with temporary_store() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        base = ["task=sum", "device=cpu"]
        jobs = iter(range(1_000_000))

        def tracked() -> float:
            return time_call(lambda: run_job([*base, f"tracking.uri={uri}"],
                                             Path(folder) / f"job{next(jobs)}"))

        def untracked() -> float:
            return time_call(lambda: run_job([*base, "tracking.enabled=false"],
                                             Path(folder) / f"job{next(jobs)}"))

        print(f"Timing tracked and untracked jobs, {args.repeats} rounds after one warm-up round.",
              file=sys.stderr)
        times = interleaved({"tracked": tracked, "untracked": untracked}, args.repeats)

        counter = StoreCalls()
        trips = []
        for epochs in EPOCH_COUNTS:
            counter.counts.clear()
            output_dir = Path(folder) / f"count{epochs}"
            run_job([*base, f"tracking.uri={uri}", f"trainer.epochs={epochs}"], output_dir)
            artifacts = sum(1 for path in output_dir.rglob("*") if path.is_file())
            trips.append((epochs, sum(counter.counts.values()), dict(counter.counts), artifacts))

    overhead = [a - b for a, b in zip(times["tracked"], times["untracked"])]
    ratios = paired_ratios(times, "tracked", "untracked")
    time_rows = [
        ["tracking.enabled=false (reference)", fmt(median(times["untracked"])),
         spread(times["untracked"]), "1", ""],
        ["tracked, SQLite store", fmt(median(times["tracked"])), spread(times["tracked"]),
         fmt(median(ratios)), spread(ratios)],
        ["overhead: tracked minus off", fmt(median(overhead)), spread(overhead), "", ""],
    ]
    trip_rows = [[f"{epochs:,}", str(total),
                  ", ".join(f"{name} {count}" for name, count in sorted(counts.items())),
                  str(artifacts)]
                 for epochs, total, counts, artifacts in trips]
    within_limit = [total for epochs, total, _, _ in trips if epochs <= MAX_EPOCHS_ONE_BATCH]
    constant = len(set(within_limit)) == 1
    body = (
        section_header("python benchmarks/tracking_overhead.py")
        + f"Rounds: {args.repeats}, after one warm-up round; jobs of task=sum (50 epochs) run in "
          f"one process.\n\n"
        + markdown_table(["run", "wall s (median)", "wall s (min-max)", "x off (median)",
                          "x off (min-max)"], time_rows)
        + "\n\nStore round trips of one run, by epochs:\n\n"
        + markdown_table(["epochs", "round trips", "by store method", "artifact files"],
                         trip_rows)
        + "\n\n"
        + f"- Target, round trips per run independent of the number of epochs: "
          f"{', '.join(str(total) for _, total, _, _ in trips)} at "
          f"{', '.join(f'{e:,}' for e in EPOCH_COUNTS)} epochs; {verdict(constant)} up to "
          f"{MAX_EPOCHS_ONE_BATCH} epochs. Each epoch logs two values (error and "
          f"error_predicted); beyond that each further 1000 values take one more "
          f"log_batch (MLflow's limit per request), and a run that trains longer than "
          f"tracking.flush_interval_s (5 s) adds one log_batch per interval.\n"
    )
    write_section("tracking", body, write=not args.no_write)


if __name__ == "__main__":
    main()
