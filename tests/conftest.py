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
    # The job itself sees the config without Hydra's node, as in a real run.
    job_cfg = cfg.copy()
    with open_dict(job_cfg):
        del job_cfg["hydra"]
    return job_cfg


@pytest.fixture
def train_job(tmp_path: Path, store_uri: str):
    """Run one training job in this process; return (final_error, run).

    The run is read back from the store, so the test sees what MLflow holds.
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
