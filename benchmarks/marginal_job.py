"""Marginal cost of one more job in a basic-launcher sweep, against that
job's training loop alone.

    python benchmarks/marginal_job.py [--jobs 8] [--repeats 3] [--no-write]

The marginal cost is (wall time of a sweep of N jobs - wall time of a sweep
of 1 job) / (N - 1), both `python -m src.train -m task=sum seed=...` with
Hydra's basic launcher, timed back to back in each round. The reference is
train_epochs for the same job (task=sum: 10 000 samples, batch 1000, 50
epochs), timed in this process during the same rounds. Takes about 2
minutes on 2 cores.
"""

import argparse
import sys

from common import (
    compose_train_config, fmt, interleaved, markdown_table, median, run_command, section_header,
    spread, store_overrides, temporary_store, time_training_loop, verdict, write_section,
)

PYTHON = sys.executable
TARGET_FACTOR = 1.2
TARGET_ALLOWANCE_S = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8, help="jobs in the larger sweep (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--no-write", action="store_true", help="print the table without rewriting docs/benchmarks.md")
    args = parser.parse_args()

    seeds = ",".join(str(seed) for seed in range(args.jobs))
    loop_cfg = compose_train_config(["task=sum", "device=cpu"])
    with temporary_store() as folder:
        store = store_overrides(folder)
        sweep_one = [PYTHON, "-m", "src.train", "-m", "task=sum", "seed=0", *store]
        sweep_many = [PYTHON, "-m", "src.train", "-m", "task=sum", f"seed={seeds}", *store]
        loop_repeats = 5
        loop_times = []

        def loop() -> float:
            # Several loops per round; the round's median goes in the table.
            samples = [time_training_loop(loop_cfg) for _ in range(loop_repeats)]
            loop_times.extend(samples)
            return median(samples)

        commands = {"one": lambda: run_command(sweep_one),
                    "many": lambda: run_command(sweep_many),
                    "loop": loop}
        print(f"Timing sweeps of 1 and {args.jobs} jobs, {args.repeats} rounds after one warm-up "
              f"round.", file=sys.stderr)
        times = interleaved(commands, args.repeats)

    marginal = [(many - one) / (args.jobs - 1) for one, many in zip(times["one"], times["many"])]
    ratio = [m / loop for m, loop in zip(marginal, times["loop"])]
    limit = [TARGET_FACTOR * loop + TARGET_ALLOWANCE_S for loop in times["loop"]]
    rows = [
        ["sweep of 1 job", "`python -m src.train -m task=sum seed=0 ...`",
         fmt(median(times["one"])), spread(times["one"])],
        [f"sweep of {args.jobs} jobs", f"`python -m src.train -m task=sum seed={seeds} ...`",
         fmt(median(times["many"])), spread(times["many"])],
        ["marginal job: (sweep of N - sweep of 1) / (N - 1)", "", fmt(median(marginal)), spread(marginal)],
        ["training loop alone (reference)", "train_epochs, task=sum", fmt(median(times["loop"])),
         spread(loop_times)],
    ]
    table = markdown_table(["what", "command", "wall s (median)", "wall s (min-max)"], rows)
    met = median(marginal) <= median(limit)
    body = (
        section_header("python benchmarks/marginal_job.py")
        + f"Rounds: {args.repeats}, after one warm-up round; the loop ran {loop_repeats} times per "
          f"round. `...` stands for the overrides that send the runs and Hydra's folders to a "
          f"temporary SQLite store.\n\n"
        + table + "\n\n"
        + f"- Marginal job against its training loop: {fmt(median(ratio))}x "
          f"(min-max {spread(ratio)}).\n"
        + f"- Target, marginal job within {TARGET_FACTOR}x of the loop plus "
          f"{TARGET_ALLOWANCE_S * 1000:.0f} ms ({fmt(median(limit))} s): {fmt(median(marginal))} s, "
          f"{verdict(met)}.\n"
        + f"- Overhead per job beyond the loop: {fmt(median(marginal) - median(times['loop']))} s.\n"
    )
    write_section("marginal-job", body, write=not args.no_write)


if __name__ == "__main__":
    main()
