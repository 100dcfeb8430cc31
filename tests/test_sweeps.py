"""Multiruns through real launcher processes: one parent run per sweep, one
child per job, full histories, failures counted, and the compare command."""

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import metric_history, run_cli, runs_by_role

pytestmark = pytest.mark.slow


def sweep(tmp_path: Path, store_uri: str, *overrides: str, timeout: float = 300):
    return run_cli(["-m", "src.train", "-m", "device=cpu", f"tracking.uri={store_uri}",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides], timeout=timeout)


def check_complete_sweep(store_uri: str, jobs: int, epochs: int):
    parents, children, stray = runs_by_role(store_uri)
    assert len(parents) == 1
    assert len(children) == jobs
    assert stray == []  # nothing landed in the Default experiment
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sweep.jobs"] == str(jobs)
    assert parent.data.tags["sweep.FINISHED"] == str(jobs)
    assert parent.data.tags["sweep.FAILED"] == "0"
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        assert metric_history(store_uri, child.info.run_id)[1] == list(range(epochs))
    assert len({child.info.run_id for child in children}) == jobs
    return parent, children


def test_basic_launcher_sweep(tmp_path, store_uri):
    result = sweep(tmp_path, store_uri, "optimizer=reassign,inplace", "task=intro", "trainer.epochs=4")
    assert result.returncode == 0, result.stderr
    parent, children = check_complete_sweep(store_uri, jobs=2, epochs=4)
    histories = {c.data.tags["optimizer"]: metric_history(store_uri, c.info.run_id)[0] for c in children}
    assert histories["reassign"] == histories["inplace"]
    assert "Sweep done: 2 jobs, 2 finished, 0 failed" in result.stdout


def test_joblib_sweep_in_two_processes(tmp_path, store_uri):
    result = sweep(tmp_path, store_uri, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                   "optimizer.lr=0.01,0.1", "seed=0,1", "trainer.epochs=5")
    assert result.returncode == 0, result.stderr
    check_complete_sweep(store_uri, jobs=4, epochs=5)


def test_submitit_local_sweep(tmp_path, store_uri):
    result = sweep(tmp_path, store_uri, "hydra/launcher=submitit_local", "optimizer.lr=0.01,0.1",
                   "trainer.epochs=3")
    assert result.returncode == 0, result.stderr
    check_complete_sweep(store_uri, jobs=2, epochs=3)


def test_failing_job_mid_sweep(tmp_path, store_uri):
    # lr=5 is far above the stability bound (about 1 for the sum task), so
    # the middle job diverges; the job after it must still get its own run.
    result = sweep(tmp_path, store_uri, "optimizer.lr=0.01,5,0.02", "trainer.epochs=10")
    assert result.returncode != 0
    parents, children, stray = runs_by_role(store_uri)
    assert len(parents) == 1
    assert len(children) == 3
    assert stray == []
    status = {float(c.data.params["optimizer.lr"]): c.info.status for c in children}
    assert status == {0.01: "FINISHED", 5.0: "FAILED", 0.02: "FINISHED"}
    parent = parents[0]
    assert parent.info.status == "FAILED"
    assert parent.data.tags["sweep.FAILED"] == "1"
    assert parent.data.tags["sweep.FINISHED"] == "2"
    assert "2 finished, 1 failed" in result.stdout


def test_joblib_sweep_with_missing_strict_device(tmp_path, store_uri):
    import torch

    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS, so device=mps cannot fail here")
    result = sweep(tmp_path, store_uri, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                   "device=cpu,mps", "device.strict=true", "trainer.epochs=3")
    assert result.returncode != 0
    parents, children, _ = runs_by_role(store_uri)
    by_device = {c.data.tags["mlflow.runName"].split("device=")[1].split()[0]: c for c in children}
    assert by_device["cpu"].info.status == "FINISHED"
    assert by_device["mps"].info.status == "FAILED"
    assert "device.name" in by_device["mps"].data.tags["failure"]
    assert parents[0].data.tags["sweep.FAILED"] == "1"


def test_server_store_sweep(tmp_path, mlflow_server):
    result = sweep(tmp_path, mlflow_server, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                   "optimizer.lr=0.01,0.1", "seed=0,1", "trainer.epochs=4")
    assert result.returncode == 0, result.stderr
    parent, children = check_complete_sweep(mlflow_server, jobs=4, epochs=4)
    artifacts = {a.path for a in MlflowClient(mlflow_server).list_artifacts(children[0].info.run_id)}
    assert "error_curve.png" in artifacts


def test_optuna_preset_finds_stable_lr(tmp_path, store_uri):
    result = sweep(tmp_path, store_uri, "experiment=lr_search", "hydra.sweeper.n_trials=6",
                   "trainer.epochs=10")
    assert result.returncode == 0, result.stderr
    parents, children, _ = runs_by_role(store_uri)
    assert len(parents) == 1
    assert len(children) == 6
    finished = [c for c in children if c.info.status == "FINISHED"]
    best = min(finished, key=lambda c: c.data.metrics["final_error"])
    lr = float(best.data.params["optimizer.lr"])
    assert 0 < lr < best.data.metrics["lr_stability_bound"]
    assert parents[0].data.metrics["best_error"] == best.data.metrics["final_error"]


def test_compare_sorts_and_plots(tmp_path, store_uri):
    result = sweep(tmp_path, store_uri, "optimizer.lr=0.003,0.1,0.01", "trainer.epochs=5")
    assert result.returncode == 0, result.stderr
    png = tmp_path / "curves.png"
    compared = run_cli(["-m", "src.compare", "--uri", store_uri, "--output", str(png)])
    assert compared.returncode == 0, compared.stderr

    lines = compared.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("optimizer.lr"))
    rows = [line.split() for line in lines[header + 2: header + 5]]
    assert [row[0] for row in rows] == ["0.1", "0.01", "0.003"]  # larger stable lr, lower error
    errors = [float(row[2]) for row in rows]
    assert errors == sorted(errors)
    assert png.read_bytes().startswith(b"\x89PNG")

    parents, _, _ = runs_by_role(store_uri)
    logged = {a.path for a in MlflowClient(store_uri).list_artifacts(parents[0].info.run_id, "compare")}
    assert logged == {"compare/curves.png"}
