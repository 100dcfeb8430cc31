"""The training job end to end: real config, real SQLite store, the run read
back through MLflow's API."""

import json
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from conftest import metric_history, run_cli
from src.task import make_task_data


def test_sum_task_matches_least_squares(train_job, store_uri):
    # Noisy targets, so the least-squares optimum differs from the true map
    # and the test checks whether training found the optimum of its own data.
    final_error, run = train_job("task=sum", "task.noise_std=0.1", "trainer.epochs=200",
                                 "optimizer.lr=0.05")
    cfg_task = _sum_task(noise_std=0.1)
    data = make_task_data(cfg_task, seed=0, device=torch.device("cpu"))
    ones = torch.ones(data.inputs.shape[0], 1)
    solution = torch.linalg.lstsq(torch.cat([data.inputs, ones], 1).double(),
                                  data.targets.double()).solution.squeeze()

    metrics = run.data.metrics
    assert metrics["weight.0.0"] == pytest.approx(solution[0].item(), abs=1e-3)
    assert metrics["weight.0.1"] == pytest.approx(solution[1].item(), abs=1e-3)
    assert metrics["bias.0"] == pytest.approx(solution[2].item(), abs=1e-3)
    # The noise floor is the noise variance, 0.01.
    assert final_error == pytest.approx(0.01, rel=0.1)


def test_sum_task_learns_true_map(train_job, store_uri):
    final_error, run = train_job("task=sum")
    metrics = run.data.metrics
    assert metrics["weight.0.0"] == pytest.approx(1.0, abs=1e-3)
    assert metrics["weight.0.1"] == pytest.approx(1.0, abs=1e-3)
    assert metrics["bias.0"] == pytest.approx(0.0, abs=1e-3)
    assert final_error < 1e-6
    assert run.info.status == "FINISHED"


def test_history_has_one_point_per_epoch(train_job, store_uri):
    final_error, run = train_job("task=sum", "trainer.epochs=7")
    values, steps = metric_history(store_uri, run.info.run_id)
    assert steps == list(range(7))
    assert values[-1] == pytest.approx(final_error)
    assert values[-1] < values[0]


def test_reassign_and_inplace_identical(train_job, store_uri):
    runs = {style: train_job("task=intro", f"optimizer={style}", "trainer.epochs=5")[1]
            for style in ("reassign", "inplace")}
    histories = {style: metric_history(store_uri, run.info.run_id)[0] for style, run in runs.items()}
    assert histories["reassign"] == histories["inplace"]
    for key in ("weight.0.0", "weight.1.0", "bias.0", "bias.1"):
        assert runs["reassign"].data.metrics[key] == runs["inplace"].data.metrics[key]


def test_sgd_agrees_with_reassign(train_job, store_uri):
    runs = {style: train_job("task=sum", f"optimizer={style}", "trainer.epochs=20")[1]
            for style in ("reassign", "sgd")}
    reassign = metric_history(store_uri, runs["reassign"].info.run_id)[0]
    sgd = metric_history(store_uri, runs["sgd"].info.run_id)[0]
    assert len(sgd) == len(reassign) == 20
    for expected, value in zip(reassign, sgd):
        assert value == pytest.approx(expected, rel=1e-5, abs=1e-6)
    for key in ("weight.0.0", "weight.0.1", "bias.0"):
        assert runs["sgd"].data.metrics[key] == pytest.approx(runs["reassign"].data.metrics[key], abs=1e-6)


def test_run_records_tags_params_and_artifacts(train_job, store_uri):
    _, run = train_job("task=sum", "trainer.epochs=3", "optimizer=inplace", "seed=4")
    tags, params = run.data.tags, run.data.params
    # Every override shows in the name, except those it already names.
    assert tags["mlflow.runName"] == "sum inplace lr=0.01 device=cpu epochs=3 seed=4"
    assert tags["task"] == "sum"
    assert tags["optimizer"] == "inplace"
    assert tags["device.requested"] == "cpu"
    assert tags["device.actual"] == "cpu"
    assert tags["torch.version"] == torch.__version__
    assert "seed=4" in json.loads(tags["hydra.overrides"])
    assert params["trainer.epochs"] == "3"
    assert params["optimizer.lr"] == "0.01"
    assert params["task.weight"] == "[[1.0, 1.0]]"

    client = MlflowClient(store_uri)
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"coefficients.json", "error_curve.png", "config_resolved.yaml"} <= top

    local = Path(client.download_artifacts(run.info.run_id, "coefficients.json"))
    coefficients = json.loads(local.read_text())
    assert coefficients["true"] == {"weight": [[1.0, 1.0]], "bias": [0.0]}
    assert coefficients["learned"]["weight"][0][0] == run.data.metrics["weight.0.0"]
    png = Path(client.download_artifacts(run.info.run_id, "error_curve.png")).read_bytes()
    assert png.startswith(b"\x89PNG")


def test_artifacts_stay_beside_the_database(train_job, store_uri, tmp_path):
    _, run = train_job("task=sum", "trainer.epochs=1")
    assert run.info.artifact_uri.startswith(tmp_path.as_uri())


def test_missing_device_falls_back_with_tags(train_job, store_uri, monkeypatch, caplog):
    # This machine has no MPS; patching the check keeps that true anywhere.
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    _, run = train_job("task=sum", "trainer.epochs=2", "device=mps")
    assert run.data.tags["device.requested"] == "mps"
    assert run.data.tags["device.actual"] == "cpu"
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "mps" in r.getMessage()]
    assert len(warnings) == 1


def test_user_defined_map_from_overrides(train_job, store_uri):
    # A 3-input, 2-output map given on the command line alone.
    _, run = train_job("task=sum", "task.name=mine", "task.weight=[[1,2,3],[0,-1,0.5]]",
                       "task.bias=[1,-2]", "trainer.epochs=150", "optimizer.lr=0.1")
    metrics = run.data.metrics
    expected = {"weight.0.0": 1, "weight.0.1": 2, "weight.0.2": 3, "weight.1.0": 0,
                "weight.1.1": -1, "weight.1.2": 0.5, "bias.0": 1, "bias.1": -2}
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-3), key


@pytest.mark.slow
def test_cli_run_and_two_job_multirun(tmp_path, store_uri):
    single = run_cli(["-m", "src.train", "task=sum", "trainer.epochs=3", "device=cpu",
                      f"tracking.uri={store_uri}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert single.returncode == 0, single.stderr
    assert "Average Error in epoch 2 is:" in single.stdout
    assert "Open it:" in single.stdout
    client = MlflowClient(store_uri)
    [run] = client.search_runs([client.get_experiment_by_name("descent-lab").experiment_id])
    hydra_files = {a.path for a in client.list_artifacts(run.info.run_id, "hydra/.hydra")}
    assert {"hydra/.hydra/config.yaml", "hydra/.hydra/overrides.yaml"} <= hydra_files
    log_files = {a.path for a in client.list_artifacts(run.info.run_id, "hydra")}
    assert "hydra/train.log" in log_files

    sweep = run_cli(["-m", "src.train", "-m", "task=intro,sum", "trainer.epochs=2", "device=cpu",
                     f"tracking.uri={store_uri}", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert sweep.returncode == 0, sweep.stderr
    experiment = client.get_experiment_by_name("descent-lab")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("mlflow.runName", "").startswith("sweep")]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    assert len(children) == 2
    assert len(runs) == 4  # the single run, the parent and its two children
    assert {c.data.tags["task"] for c in children} == {"intro", "sum"}
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert all(r.info.status == "FINISHED" for r in runs)


def _sum_task(noise_std: float):
    from omegaconf import OmegaConf
    return OmegaConf.create({"weight": [[1.0, 1.0]], "bias": [0.0], "n_samples": 10000,
                             "input_distribution": "normal", "inputs": None, "noise_std": noise_std})


def test_zero_epochs_records_start_error(train_job, store_uri):
    import src.model

    final_error, run = train_job("task=sum", "trainer.epochs=0", "seed=5")
    # The start model: the seeded default init of torch.nn.Linear.
    torch.manual_seed(5)
    model = src.model.IntroModel(2, 1)
    data = make_task_data(_sum_task(noise_std=0.0), seed=5, device=torch.device("cpu"))
    with torch.no_grad():
        expected = torch.mean((data.targets - model(data.inputs)) ** 2).item()
    assert final_error == pytest.approx(expected, rel=1e-6)
    assert run.data.metrics["final_error"] == pytest.approx(expected, rel=1e-6)
    assert run.data.metrics["weight.0.0"] == model.linear_mapping.weight[0, 0].item()
    assert metric_history(store_uri, run.info.run_id)[1] == []
