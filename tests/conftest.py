"""Fixtures that compose the real config and train into a real SQLite store
in a temporary folder, then read the run back through MLflow's API."""

import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from src import PROJECT_ROOT

CONF_DIR = str(PROJECT_ROOT / "conf")


@pytest.fixture
def store_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def compose_config(overrides: List[str], output_dir: Path):
    """Compose conf/train.yaml as `python -m src.train` would, with Hydra's
    runtime fields set, so HydraConfig.get() works in the job."""
    from src.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.name = "train"
    HydraConfig.instance().set_config(cfg)
    # The job gets the config without Hydra's node, as in a real run.
    job_cfg = cfg.copy()
    with open_dict(job_cfg):
        del job_cfg["hydra"]
    return job_cfg


@pytest.fixture
def train_job(tmp_path: Path, store_uri: str):
    """Run one training job in this process; return (final_error, run).

    The run is read back from the store, so the test checks what MLflow stored.
    """
    from mlflow import MlflowClient

    import src.train

    def run(*overrides: str, expect_run: bool = True):
        output_dir = tmp_path / f"job{len(list(tmp_path.glob('job*')))}"
        cfg = compose_config([f"tracking.uri={store_uri}", "device=cpu", *overrides], output_dir)
        final_error = src.train.main(cfg)
        client = MlflowClient(store_uri)
        runs = client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            order_by=["attributes.start_time DESC"], max_results=1,
        )
        return final_error, (runs[0] if runs and expect_run else None)

    yield run
    HydraConfig.instance().cfg = None
    GlobalHydra.instance().clear()


def run_cli(args: List[str], cwd: Path = PROJECT_ROOT, timeout: float = 300, **kwargs):
    """Run `python -m src.train ARGS` (or another module) as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout, **kwargs,
    )


def metric_history(store_uri: str, run_id: str, key: str = "error"):
    from mlflow import MlflowClient

    history = MlflowClient(store_uri).get_metric_history(run_id, key)
    return [m.value for m in sorted(history, key=lambda m: m.step)], sorted(m.step for m in history)


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """A real `mlflow server` on a free port of 127.0.0.1 with a temporary
    SQLite backend; stopped, with its workers, at the end of the test."""
    import signal
    import time
    import urllib.request

    port = free_port()
    folder = tmp_path / "server"
    folder.mkdir()
    log_file = open(folder / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--workers", "1"],
        stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start: {(folder / 'server.log').read_text()}")
                time.sleep(0.5)
        yield uri
    finally:
        # The server's workers share its process group.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log_file.close()


def runs_by_role(store_uri: str, experiment: str = "descent-lab"):
    """Return (parents, children, runs in other experiments) of a store."""
    from mlflow import MlflowClient

    client = MlflowClient(store_uri)
    target = client.get_experiment_by_name(experiment)
    runs = client.search_runs([target.experiment_id], max_results=1000)
    parents = [r for r in runs if "sweep.overrides" in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    others = [e.experiment_id for e in client.search_experiments() if e.experiment_id != target.experiment_id]
    stray = client.search_runs(others, max_results=1000) if others else []
    return parents, children, stray
