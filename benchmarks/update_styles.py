"""Steps per second of each update style against a bare torch.optim.SGD
loop, at batch sizes 1, 1000 and 100 000.

    python benchmarks/update_styles.py [--repeats 5] [--device cpu] [--no-write]

A step is one batch: forward, error, backward and update. The styles run
through the project's train_epochs with trainer.shuffle=false, so the
figure shows the cost of the step, not of the shuffle (benchmarks/large_task.py
shows that). The reference is the loop a user would write by hand with
torch.nn.Linear and torch.optim.SGD, with the error also summed on the device
and read once per epoch. All variants run once per round, back to back.
Takes about 1 minute on 2 cores.
"""

import argparse
import sys

import torch
from omegaconf import OmegaConf

from common import (
    fmt, interleaved, markdown_table, median, paired_ratios, section_header, spread, time_call,
    verdict, write_section,
)
from src.model import IntroModel
from src.task import TaskData, make_task_data
from src.trainer import train_epochs
from src.updates import STYLE_CLASSES, make_update

# (batch size, samples): 1000, 100 and 10 batches per epoch.
SIZES = ((1, 1_000), (1000, 100_000), (100_000, 1_000_000))
LR = 0.01
SECONDS_PER_MEASUREMENT = 0.4
TARGET_INPLACE = 0.9


def sum_task(n_samples: int, device: torch.device) -> TaskData:
    task = OmegaConf.create({"weight": [[1.0, 1.0]], "bias": [0.0], "n_samples": n_samples,
                             "input_distribution": "normal", "noise_std": 0.0, "inputs": None})
    return make_task_data(task, seed=0, device=device)


def project_loop(style: str, data: TaskData, epochs: int, batch_size: int) -> float:
    torch.manual_seed(0)
    model = IntroModel(2, 1).to(data.inputs.device)
    update = make_update(style, model, LR)
    generator = torch.Generator(device=data.inputs.device).manual_seed(0)
    return time_call(lambda: train_epochs(
        model, update.step, data, epochs, batch_size, shuffle=False, drop_last=True,
        generator=generator, on_epoch=lambda epoch, error: None, lr=LR, lr_bound=float("inf"),
    ))


def bare_sgd_loop(data: TaskData, epochs: int, batch_size: int) -> float:
    """Time the hand-written reference loop with torch.nn.Linear and torch.optim.SGD."""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1).to(data.inputs.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    inputs, targets = data.inputs, data.targets
    n_batches = inputs.shape[0] // batch_size

    def run() -> None:
        for _ in range(epochs):
            error_sum = torch.zeros((), device=inputs.device)
            for index in range(n_batches):
                start = index * batch_size
                prediction = model(inputs[start:start + batch_size])
                error = torch.mean((targets[start:start + batch_size] - prediction) ** 2)
                optimizer.zero_grad()
                error.backward()
                optimizer.step()
                error_sum += error.detach()
            error_sum.item()

    return time_call(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or mps")
    parser.add_argument("--no-write", action="store_true", help="print the table without rewriting docs/benchmarks.md")
    args = parser.parse_args()
    device = torch.device(args.device)

    rows = []
    inplace_ratios = []
    styles = sorted(STYLE_CLASSES)
    for batch_size, n_samples in SIZES:
        data = sum_task(n_samples, device)
        n_batches = n_samples // batch_size
        one_epoch = min(bare_sgd_loop(data, 1, batch_size) for _ in range(3))
        epochs = max(1, round(SECONDS_PER_MEASUREMENT / one_epoch))
        steps = epochs * n_batches

        commands = {"bare": lambda: bare_sgd_loop(data, epochs, batch_size)}
        for style in styles:
            commands[style] = lambda style=style: project_loop(style, data, epochs, batch_size)
        print(f"Batch {batch_size}: {epochs} epochs of {n_batches} steps per measurement.",
              file=sys.stderr)
        times = interleaved(commands, args.repeats)

        for name in ["bare", *styles]:
            steps_per_s = [steps / seconds for seconds in times[name]]
            ratios = paired_ratios(times, "bare", name)  # time ratio = speed ratio inverted
            label = "torch.optim.SGD loop (reference)" if name == "bare" else f"`{name}`"
            rows.append([f"{batch_size:,}", label, fmt(median(steps_per_s)), spread(steps_per_s),
                         fmt(median(ratios)), spread(ratios)])
            if name == "inplace":
                inplace_ratios.append((batch_size, median(ratios)))

    table = markdown_table(["batch", "update", "steps/s (median)", "steps/s (min-max)",
                            "x SGD loop (median)", "x SGD loop (min-max)"], rows)
    worst_batch, worst = min(inplace_ratios, key=lambda item: item[1])
    body = (
        section_header("python benchmarks/update_styles.py"
                       + (f" --device {args.device}" if args.device != "cpu" else ""))
        + f"Device: {device}. Rounds: {args.repeats}, after one warm-up round. Samples per size: "
        + ", ".join(f"{n:,} at batch {b:,}" for b, n in SIZES)
        + "; task=sum, trainer.shuffle=false, lr 0.01. Higher is faster.\n\n"
        + table + "\n\n"
        + f"- Target, `inplace` at least {TARGET_INPLACE}x the SGD loop at every size: lowest "
          f"{fmt(worst)}x (batch {worst_batch:,}), {verdict(worst >= TARGET_INPLACE)}.\n"
    )
    section = "update-styles" if args.device == "cpu" else f"update-styles-{args.device}"
    write_section(section, body, write=not args.no_write)


if __name__ == "__main__":
    main()
