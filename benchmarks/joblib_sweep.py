"""Hydra's joblib launcher with n_jobs=2 against the basic launcher, for a
sweep of 8 jobs whose training loops each take about a second.

    python benchmarks/joblib_sweep.py [--repeats 3] [--no-write]

The epochs of task=sum are set so that train_epochs takes about one second
here (calibrated at the start, in this process). Both sweeps run the same
overrides, back to back in each round. Takes about 3.5 minutes on 2 cores.
"""

import argparse
import sys

from common import (
    compose_train_config, fmt, interleaved, markdown_table, median, paired_ratios, run_command,
    section_header, spread, store_overrides, temporary_store, time_training_loop, usable_cores,
    verdict, write_section,
)

PYTHON = sys.executable
JOBS = 8
TARGET_SPEEDUP = 1.7


def calibrate_epochs(seconds: float) -> int:
    """Epochs of task=sum whose train_epochs takes about `seconds` here."""
    base_epochs = 100
    cfg = compose_train_config(["task=sum", "device=cpu", f"trainer.epochs={base_epochs}"])
    elapsed = median([time_training_loop(cfg) for _ in range(3)])
    return max(1, round(base_epochs * seconds / elapsed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--no-write", action="store_true", help="print the table without rewriting docs/benchmarks.md")
    args = parser.parse_args()

    epochs = calibrate_epochs(1.0)
    loop_cfg = compose_train_config(["task=sum", "device=cpu", f"trainer.epochs={epochs}"])
    loop_s = median([time_training_loop(loop_cfg) for _ in range(3)])
    seeds = ",".join(str(seed) for seed in range(JOBS))
    job = ["task=sum", f"trainer.epochs={epochs}", f"seed={seeds}"]
    with temporary_store() as folder:
        store = store_overrides(folder)
        basic = [PYTHON, "-m", "src.train", "-m", *job, *store]
        joblib = [*basic, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
        commands = {"basic": lambda: run_command(basic), "joblib": lambda: run_command(joblib)}
        print(f"Timing 8-job sweeps of {epochs} epochs, {args.repeats} rounds after one warm-up "
              f"round.", file=sys.stderr)
        times = interleaved(commands, args.repeats)

    speedups = paired_ratios(times, "basic", "joblib")
    common_args = " ".join(job)
    rows = [
        ["basic launcher (reference)", f"`python -m src.train -m {common_args} ...`",
         fmt(median(times["basic"])), spread(times["basic"])],
        ["joblib launcher, n_jobs=2",
         f"`python -m src.train -m {common_args} hydra/launcher=joblib hydra.launcher.n_jobs=2 ...`",
         fmt(median(times["joblib"])), spread(times["joblib"])],
    ]
    table = markdown_table(["launcher", "command", "wall s (median)", "wall s (min-max)"], rows)
    speedup = median(speedups)
    body = (
        section_header("python benchmarks/joblib_sweep.py")
        + f"Rounds: {args.repeats}, after one warm-up round. {JOBS} jobs of task=sum with "
          f"{epochs} epochs; train_epochs alone took {fmt(loop_s)} s per job in this process. "
          f"`...` stands for the overrides that send the runs to a temporary SQLite store.\n\n"
        + table + "\n\n"
        + f"- Target, joblib at least {TARGET_SPEEDUP}x faster on {usable_cores()} cores: "
          f"{fmt(speedup)}x (min-max {spread(speedups)}), {verdict(speedup >= TARGET_SPEEDUP)}.\n"
    )
    write_section("joblib", body, write=not args.no_write)


if __name__ == "__main__":
    main()
