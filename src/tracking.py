"""One MLflow run per training job: its name, tags and params, and the status
it ends with (FINISHED, FAILED on an error, KILLED on Ctrl-C or SIGTERM)."""

import getpass
import json
import platform
import signal
import subprocess
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from omegaconf import DictConfig, OmegaConf

from src import PROJECT_ROOT

# Overrides that the run name shows already through the task and the style.
_NAMED_ELSEWHERE = ("task", "optimizer", "optimizer.name", "task.name")


def run_name(cfg: DictConfig, overrides: List[str]) -> str:
    """Say what the run is and what differs, e.g. 'sum inplace lr=0.1 seed=2'."""
    if cfg.tracking.run_name:
        return cfg.tracking.run_name
    parts = [cfg.task.name, cfg.optimizer.name, f"lr={cfg.optimizer.lr:g}"]
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key in _NAMED_ELSEWHERE or key == "optimizer.lr" or key.startswith(("tracking.", "hydra")):
            continue
        parts.append(f"{key.split('.')[-1]}={value}")
    return " ".join(parts)


def flatten(config: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Flatten nested dicts into dotted keys; lists become JSON text."""
    flat: Dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def git_state() -> Tuple[str, str]:
    """Return (commit, dirty) of the project checkout, or 'unknown' twice."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), *args],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = "true" if git("status", "--porcelain", "--untracked-files=no") else "false"
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"


def run_tags(cfg: DictConfig, actual_device: str, overrides: List[str]) -> Dict[str, str]:
    commit, dirty = git_state()
    return {
        "task": cfg.task.name,
        "optimizer": cfg.optimizer.name,
        "device.requested": cfg.device.name,
        "device.actual": actual_device,
        "git.commit": commit,
        "git.dirty": dirty,
        "torch.version": torch.__version__,
        "python.version": platform.python_version(),
        "hydra.overrides": json.dumps(overrides),
        "mlflow.source.name": "python -m src.train",
        "mlflow.source.type": "LOCAL",
        "mlflow.source.git.commit": commit,
        "mlflow.user": getpass.getuser(),
    }


def config_params(cfg: DictConfig) -> Dict[str, Any]:
    """Return the resolved config, flattened, without Hydra's own node."""
    return flatten({
        key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        for key, value in cfg.items() if key != "hydra"
    })


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM reached the training process."""

    def __init__(self, signal_name: str = "SIGINT") -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


@contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """Turn SIGTERM (what cluster schedulers send) into an exception like
    Ctrl-C, so the run can be ended KILLED with what it logged kept."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    except ValueError:
        # Only the main thread may set handlers; elsewhere keep the default.
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def recording(recorder) -> Iterator[None]:
    """End the run FINISHED, or KILLED on an interrupt, or FAILED on an error
    with the error in the tag 'failure'. What was logged before is flushed."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        name = getattr(interrupt, "signal_name", "SIGINT")
        recorder.set_tags({"failure": f"interrupted by {name}"})
        recorder.end("KILLED")
        raise
    except BaseException as error:
        recorder.set_tags({"failure": f"{type(error).__name__}: {error}"})
        recorder.end("FAILED")
        raise
    else:
        recorder.end("FINISHED")


def start_run(uri: str, experiment_id: str, name: str, tags: Dict[str, str],
              parent_run_id: Optional[str], flush_interval_s: float):
    """Create the MLflow run and return a RunRecorder for it."""
    from mlflow import MlflowClient

    from src.recorder import RunRecorder

    if parent_run_id:
        tags = {**tags, "mlflow.parentRunId": parent_run_id}
    client = MlflowClient(uri)
    run = client.create_run(experiment_id, tags=tags, run_name=name)
    return RunRecorder(client, run.info.run_id, flush_interval_s)
