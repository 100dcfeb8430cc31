"""Helpers shared by the benchmark scripts: timing with medians and spread,
the machine description, the Markdown table, and rewriting one section of
docs/benchmarks.md.

Each script regenerates only the text between its own two markers,
`<!-- benchmark:NAME:start -->` and `<!-- benchmark:NAME:end -->`, so the
hand-written analysis around the sections stays as it is.
"""

import datetime
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOC = PROJECT_ROOT / "docs" / "benchmarks.md"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def machine_line() -> str:
    """Describe the CPU, cores, GPU, torch threads, Python and date in one line."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    openmp = ", ".join(f"{name}={os.environ[name]}" for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")
                       if name in os.environ) or "OpenMP defaults"
    return (f"{cpu_model()}, {usable_cores()} cores, {gpu}; torch {torch.__version__} "
            f"({torch.get_num_threads()} threads, {openmp}), Python {platform.python_version()}, "
            f"{platform.system()}; measured {datetime.date.today().isoformat()}")


def spread(samples: Sequence[float]) -> str:
    """Format the range of the samples as 'min-max'."""
    return f"{_short(min(samples))}-{_short(max(samples))}"


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def _short(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def fmt(value: float) -> str:
    """Format a number with about three significant digits."""
    return _short(value)


def time_call(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def child_env() -> Dict[str, str]:
    """Return the environment for timed subprocesses, without the caller's
    MLFLOW_TRACKING_URI, because the store comes from the command line."""
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run_command(argv: Sequence[str]) -> float:
    """Run one command from the project root; return its wall time in seconds.

    Raises RuntimeError with the end of its output if it fails, so a broken
    benchmark never reports a number.
    """
    start = time.perf_counter()
    result = subprocess.run(list(argv), cwd=PROJECT_ROOT, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"Command failed with exit status {result.returncode}: "
                           f"{shell_line(argv)}\n{result.stdout[-3000:]}")
    return elapsed


def interleaved(commands: Dict[str, Callable[[], float]], repeats: int,
                warmup: int = 1) -> Dict[str, List[float]]:
    """Time each command `repeats` times, one of each per round, so that every
    command runs under the same machine load. Warm-up rounds are not kept."""
    times: Dict[str, List[float]] = {name: [] for name in commands}
    for round_index in range(warmup + repeats):
        for name, command in commands.items():
            elapsed = command()
            if round_index >= warmup:
                times[name].append(elapsed)
        print(f"  round {round_index + 1}/{warmup + repeats} done", file=sys.stderr, flush=True)
    return times


def paired_ratios(times: Dict[str, List[float]], name: str, reference: str) -> List[float]:
    """Return the ratio of `name` to `reference` for each round."""
    return [a / b for a, b in zip(times[name], times[reference])]


def shell_line(argv: Sequence[str]) -> str:
    """Render the command as a user would type it from the project root."""
    words = list(argv)
    if words and words[0] == sys.executable:
        words[0] = "python"
    return " ".join(shlex.quote(word) for word in words)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(met: bool) -> str:
    return "met" if met else "missed"


def write_section(name: str, body: str, write: bool = True) -> None:
    """Print the section, and replace it in docs/benchmarks.md if `write`."""
    print(body)
    if not write:
        return
    start, end = f"<!-- benchmark:{name}:start -->", f"<!-- benchmark:{name}:end -->"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        before = text[: text.index(start)]
        after = text[text.index(end) + len(end):]
        text = before + block + after
    else:
        text = text.rstrip() + f"\n\n{block}\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    print(f"Wrote the '{name}' section of {DOC.relative_to(PROJECT_ROOT)}.", file=sys.stderr)


def section_header(command: str) -> str:
    return f"Machine: {machine_line()}.\nCommand: `{command}`.\n"


def temporary_store() -> tempfile.TemporaryDirectory:
    """Create a folder for a throw-away SQLite store and Hydra's job folders,
    so a benchmark leaves the project's own mlruns/ untouched."""
    return tempfile.TemporaryDirectory(prefix="descent-lab-bench-")


def store_overrides(folder: Optional[str]) -> List[str]:
    """Return the overrides that send the runs and Hydra's folders into `folder`."""
    if folder is None:
        return []
    return [f"tracking.uri=sqlite:///{folder}/mlflow.db",
            f"hydra.run.dir={folder}/hydra/" + "${now:%H-%M-%S}-${unique_suffix:}",
            f"hydra.sweep.dir={folder}/hydra/" + "${now:%H-%M-%S}-${unique_suffix:}-sweep"]


def compose_train_config(overrides: Sequence[str]):
    """Compose conf/train.yaml with `overrides`, as `python -m src.train` does,
    without Hydra's own node."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from src.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def time_training_loop(cfg, device: str = "cpu") -> float:
    """Build the job's data, model and update as src/train.py does, then
    return the wall time of train_epochs alone."""
    import torch

    from src.model import IntroModel
    from src.task import DTYPES, make_task_data
    from src.trainer import train_epochs
    from src.updates import make_update

    torch_device = torch.device(device)
    data = make_task_data(cfg.task, cfg.seed, torch_device, cfg.device.dtype)
    n_outputs, n_inputs = data.true_weight.shape
    torch.manual_seed(cfg.seed)
    model = IntroModel(n_inputs, n_outputs).to(device=torch_device, dtype=DTYPES[cfg.device.dtype])
    update = make_update(cfg.optimizer.name, model, cfg.optimizer.lr)
    generator = torch.Generator(device=torch_device).manual_seed(cfg.seed)
    return time_call(lambda: train_epochs(
        model, update.step, data, cfg.trainer.epochs, cfg.trainer.batch_size,
        cfg.trainer.shuffle, cfg.trainer.drop_last, generator, lambda epoch, error: None,
        cfg.optimizer.lr, float("inf"),
    ))
