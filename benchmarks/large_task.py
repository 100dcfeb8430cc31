"""A large task: 10 million samples of 2 features, batch 100 000, trained
by the project's train_epochs. Samples per second, against one numpy pass
over the same data.

    python benchmarks/large_task.py [--repeats 5] [--no-write]

The numpy pass is the arithmetic of one full-batch gradient step in float32:
prediction, residual, mean squared error and the gradients of weight and
bias, over all 10 million samples at once. The training rows run the default
`reassign` update with the shuffle on (the default) and off, and the shuffle
alone (torch.randperm plus the two index_select copies) shows what the
shuffle costs. On a machine with CUDA the same rows run on cuda too; numpy
stays on the CPU. All rows run once per round, back to back. Takes about
1.5 minutes on 2 cores.
"""

import argparse
import sys

import numpy as np
import torch
from omegaconf import OmegaConf

from common import (
    fmt, interleaved, markdown_table, median, section_header, spread, time_call, verdict,
    write_section,
)
from src.model import IntroModel
from src.task import make_task_data
from src.trainer import train_epochs
from src.updates import make_update

N_SAMPLES = 10_000_000
BATCH_SIZE = 100_000
EPOCHS = 2
LR = 0.01
TARGET = 0.3


def numpy_pass(inputs: np.ndarray, targets: np.ndarray, weight: np.ndarray,
               bias: np.ndarray) -> float:
    """Time the arithmetic of one full-batch gradient step over all samples."""
    def run() -> None:
        residual = inputs @ weight.T + bias - targets
        float(np.mean(residual * residual))
        scale = np.float32(2 / residual.size)
        scale * (residual.T @ inputs)
        scale * residual.sum(axis=0)

    return time_call(run)


def training(device: torch.device, shuffle: bool):
    task = OmegaConf.create({"weight": [[1.0, 1.0]], "bias": [0.0], "n_samples": N_SAMPLES,
                             "input_distribution": "normal", "noise_std": 0.0, "inputs": None})
    data = make_task_data(task, seed=0, device=device)

    def run() -> float:
        torch.manual_seed(0)
        model = IntroModel(2, 1).to(device)
        update = make_update("reassign", model, LR)
        generator = torch.Generator(device=device).manual_seed(0)
        return time_call(lambda: train_epochs(
            model, update.step, data, EPOCHS, BATCH_SIZE, shuffle=shuffle, drop_last=True,
            generator=generator, on_epoch=lambda epoch, error: None, lr=LR, lr_bound=float("inf"),
        ))

    def shuffle_only() -> float:
        generator = torch.Generator(device=device).manual_seed(0)

        def one_shuffle() -> None:
            order = torch.randperm(N_SAMPLES, generator=generator, device=device)
            data.inputs.index_select(0, order)
            data.targets.index_select(0, order).sum().item()  # waits for the device

        return EPOCHS * time_call(one_shuffle)

    return run, shuffle_only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--no-write", action="store_true", help="print the table without rewriting docs/benchmarks.md")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((N_SAMPLES, 2), dtype=np.float32)
    targets = inputs.sum(axis=1, keepdims=True)
    weight = np.zeros((1, 2), dtype=np.float32)
    bias = np.zeros(1, dtype=np.float32)

    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    commands = {"numpy": lambda: numpy_pass(inputs, targets, weight, bias)}
    for device in devices:
        shuffled, shuffle_only = training(device, shuffle=True)
        unshuffled, _ = training(device, shuffle=False)
        commands[f"{device.type} shuffle"] = shuffled
        commands[f"{device.type} no shuffle"] = unshuffled
        commands[f"{device.type} shuffle alone"] = shuffle_only
    print(f"Timing {len(commands)} rows, {args.repeats} rounds after one warm-up round.",
          file=sys.stderr)
    times = interleaved(commands, args.repeats)

    samples = EPOCHS * (N_SAMPLES // BATCH_SIZE) * BATCH_SIZE
    numpy_rate = [N_SAMPLES / seconds for seconds in times["numpy"]]
    rows = [["numpy pass, CPU (reference)", fmt(median(numpy_rate) / 1e6), spread(
        [rate / 1e6 for rate in numpy_rate]), "1", ""]]
    verdicts = []
    for device in devices:
        for name, label in (("shuffle", "train_epochs, trainer.shuffle=true (default)"),
                            ("no shuffle", "train_epochs, trainer.shuffle=false"),
                            ("shuffle alone", "the shuffle alone: randperm + 2 index_select")):
            key = f"{device.type} {name}"
            rate = [samples / seconds for seconds in times[key]]
            ratios = [r / n for r, n in zip(rate, numpy_rate)]
            rows.append([f"{label}, {device.type}", fmt(median(rate) / 1e6),
                         spread([r / 1e6 for r in rate]), fmt(median(ratios)), spread(ratios)])
            if name != "shuffle alone":
                verdicts.append(f"{device.type}, {name}: {fmt(median(ratios))}x, "
                                f"{verdict(median(ratios) >= TARGET)}")
    if len(devices) == 1:
        rows.append(["cuda", "not measured here (no GPU)", "", "", ""])
    table = markdown_table(["what", "million samples/s (median)", "(min-max)",
                            "x numpy pass (median)", "x numpy pass (min-max)"], rows)
    body = (
        section_header("python benchmarks/large_task.py")
        + f"Rounds: {args.repeats}, after one warm-up round; {EPOCHS} epochs per training row; "
          f"task=sum with {N_SAMPLES:,} samples, batch {BATCH_SIZE:,}, the `reassign` update, "
          f"float32. Higher is faster.\n\n"
        + table + "\n\n"
        + f"- Target, at least {TARGET}x of a numpy pass: " + "; ".join(verdicts) + ".\n"
    )
    write_section("large-task", body, write=not args.no_write)


if __name__ == "__main__":
    main()
