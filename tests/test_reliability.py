"""Bad input fails before any run exists; faults during a run leave a
truthful record in the store."""

import json
import math
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from conftest import free_port, metric_history, run_cli, runs_by_role

# (overrides, words the error must contain). Each case must exit non-zero
# with its message and leave the store without runs.
BAD_INPUT = [
    (["optimizer.lr=0"], ["optimizer.lr", "0.0", "> 0"]),
    (["optimizer.lr=-0.1"], ["optimizer.lr", "-0.1", "> 0"]),
    (["optimizer.lr=inf"], ["optimizer.lr", "inf", "finite"]),
    (["optimizer.lr=nan"], ["optimizer.lr", "nan", "finite"]),
    (["optimizer.lr=[0.1,0.2]"], ["optimizer.lr", "[0.1, 0.2]", "Float"]),
    (["trainer.batch_size=0"], ["trainer.batch_size", "0", ">= 1"]),
    (["trainer.batch_size=-5"], ["trainer.batch_size", "-5", ">= 1"]),
    (["trainer.batch_size=2.5"], ["trainer.batch_size", "2.5", "Integer"]),
    (["trainer.epochs=-1"], ["trainer.epochs", "-1", ">= 0"]),
    (["seed=-3"], ["seed", "-3", ">= 0"]),
    (["tracking.experiment="], ["tracking.experiment", "non-empty"]),
    (["task=intro", "task.name=sum"], ["task.name", "sum", "task=sum"]),
    (["task.n_samples=0"], ["task.n_samples", "0", ">= 1"]),
    (["task.weight=[[1,2],[3]]", "task.bias=[0,0]"], ["task.weight", "rows of equal length"]),
    (["task.bias=[0,1]"], ["task.bias", "[0.0, 1.0]", "1 number,"]),
    (["task=nope"], ["task/nope", "intro", "sum"]),
    (["optimizer=adam"], ["optimizer/adam", "inplace", "reassign", "sgd"]),
    (["device=tpu"], ["device/tpu", "auto", "cpu", "cuda", "mps"]),
    (["optimizer.lrr=0.1"], ["Unknown key", "optimizer.lrr", "did you mean optimizer.lr"]),
    (["trainer.epoch=3"], ["Unknown key", "trainer.epoch", "did you mean trainer.epochs"]),
    (["+optimizer.lrr=0.1"], ["Unknown key", "optimizer.lrr", "did you mean optimizer.lr"]),
    (["+trainer.epoch=3"], ["Unknown key", "trainer.epoch", "did you mean trainer.epochs"]),
    (["optimizer=sgd", "optimizer.name=inplace"], ["optimizer.name", "inplace", "optimizer=inplace"]),
    (["optimizer.lr=0.1,0.2"], ["optimizer.lr=0.1,0.2", "--multirun"]),
    (["device=mps", "device.dtype=float64"], ["device.dtype", "float64", "float32"]),
    (["device=mps", "device.strict=true"], ["device.name", "mps", "device.strict"]),
]


def _run_bad_input(case, store_uri, tmp_path):
    overrides, _ = case
    return run_cli(["-m", "src.train", "task=sum", "trainer.epochs=2", f"tracking.uri={store_uri}",
                    f"hydra.run.dir={tmp_path / 'run'}", *overrides], timeout=120)


@pytest.mark.slow
def test_bad_input_table(tmp_path, store_uri):
    if torch.backends.mps.is_available():
        pytest.skip("the table assumes a machine without MPS")
    # Two at a time: each case is a whole Python start-up.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda case: _run_bad_input(case, store_uri, tmp_path), BAD_INPUT))

    for (overrides, words), result in zip(BAD_INPUT, results):
        output = result.stdout + result.stderr
        assert result.returncode != 0, f"{overrides} was accepted:\n{output}"
        for word in words:
            assert word in output, f"{overrides}: {word!r} missing from:\n{output}"
        assert "Traceback" not in output, f"{overrides} printed a traceback:\n{output}"

    database = Path(store_uri.removeprefix("sqlite:///"))
    if database.exists():
        client = MlflowClient(store_uri)
        experiments = [e.experiment_id for e in client.search_experiments()]
        assert client.search_runs(experiments) == []


def test_batch_larger_than_data_uses_one_batch(train_job, store_uri, caplog):
    caplog.set_level("INFO")
    final_error, run = train_job("task=sum", "task.n_samples=50", "trainer.batch_size=1000",
                                 "trainer.epochs=3")
    assert run.info.status == "FINISHED"
    notes = [r for r in caplog.records if "larger than the 50 samples" in r.getMessage()]
    assert len(notes) == 1
    # One full-data step per epoch, so three points that fall.
    values, steps = metric_history(store_uri, run.info.run_id)
    assert steps == [0, 1, 2]
    assert values[2] < values[1] < values[0]


def test_divergence_ends_failed_with_finite_history(tmp_path, store_uri):
    result = run_cli(["-m", "src.train", "task=sum", "optimizer.lr=5", "device=cpu",
                      f"tracking.uri={store_uri}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "diverged" in result.stderr
    assert "learning rate 5.0" in result.stderr
    # The bound is near 1 for standard-normal inputs in batches of 1000.
    bound = float(result.stderr.split("when lr < ")[1].split(";")[0])
    assert 0.5 < bound < 1.0

    client = MlflowClient(store_uri)
    [run] = client.search_runs([client.get_experiment_by_name("descent-lab").experiment_id])
    assert run.info.status == "FAILED"
    assert "DivergenceError" in run.data.tags["failure"]
    values, steps = metric_history(store_uri, run.info.run_id)
    assert values and all(math.isfinite(v) and v < 1e300 for v in values)
    assert steps == list(range(len(steps)))
    assert not any(key.startswith(("weight.", "bias.")) for key in run.data.metrics)
    # The stopped run keeps its config, log and curve as artifacts.
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config_resolved.yaml", "error_curve.png", "hydra"} <= artifacts
    logs = {a.path for a in client.list_artifacts(run.info.run_id, "hydra")}
    assert "hydra/train.log" in logs


@pytest.mark.slow
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_interrupt_ends_killed_with_history(tmp_path, store_uri, signal_number):
    import os

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "src.train", "task=sum", "trainer.epochs=100000", "device=cpu",
         "tracking.flush_interval_s=0.2", f"tracking.uri={store_uri}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        client = MlflowClient(store_uri)
        run_id, deadline = None, time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.3)
            runs = _all_runs(client, store_uri)
            if runs and len(client.get_metric_history(runs[0].info.run_id, "error")) >= 3:
                run_id = runs[0].info.run_id
                break
        assert run_id, "the run never logged three epochs"
        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode != 0
    assert "KILLED" in stderr
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.info.end_time is not None
    assert signal.Signals(signal_number).name in run.data.tags["failure"]
    values, steps = metric_history(store_uri, run_id)
    assert len(steps) >= 3
    assert steps == list(range(len(steps)))
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config_resolved.yaml", "error_curve.png", "hydra"} <= artifacts
    assert "optimum_error" in run.data.metrics


def _all_runs(client, store_uri):
    if not Path(store_uri.removeprefix("sqlite:///")).exists():
        return []
    try:
        return client.search_runs([e.experiment_id for e in client.search_experiments()])
    except Exception:  # the store may still be creating its tables
        return []


def test_crash_ends_failed_with_failure_tag(train_job, store_uri, monkeypatch):
    import src.train

    def failing_plot(*args, **kwargs):
        raise OSError("No space left on device")

    # The crash comes after training, in the plot step; training is untouched.
    monkeypatch.setattr(src.train, "plot_error_curves", failing_plot)
    with pytest.raises(OSError):
        train_job("task=sum", "trainer.epochs=4")
    client = MlflowClient(store_uri)
    [run] = client.search_runs([client.get_experiment_by_name("descent-lab").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["failure"] == "OSError: No space left on device"
    assert metric_history(store_uri, run.info.run_id)[1] == [0, 1, 2, 3]


def test_unreachable_server_fails_fast(tmp_path):
    # A port this test found free on 127.0.0.1, so no server listens there.
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    result = run_cli(["-m", "src.train", "task=sum", f"tracking.uri={uri}",
                      f"hydra.run.dir={tmp_path / 'run'}"], timeout=60)
    elapsed = time.monotonic() - start
    assert result.returncode == 2
    assert uri in result.stderr
    assert "tracking.uri=null" in result.stderr
    assert "Average Error" not in result.stdout  # failed before training
    assert elapsed < 10


@pytest.mark.parametrize("fault", ["missing folder", "read-only folder", "corrupt database"])
def test_broken_local_store_rejected(tmp_path, fault, train_job, caplog):
    folder = tmp_path / "store"
    if fault != "missing folder":
        folder.mkdir()
    database = folder / "mlflow.db"
    if fault == "corrupt database":
        database.write_bytes(b"this is not a database" * 100)
    if fault == "read-only folder":
        folder.chmod(0o555)
    try:
        with pytest.raises(SystemExit) as exit_info:
            train_job("task=sum", f"tracking.uri=sqlite:///{database}", expect_run=False)
    finally:
        if folder.exists():
            folder.chmod(0o755)
    assert exit_info.value.code == 2
    message = " ".join(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert str(folder) in message
    expected = {"missing folder": "does not exist", "read-only folder": "read-only",
                "corrupt database": "not an SQLite database"}[fault]
    assert expected in message
    # Nothing new was made in place of the broken store.
    assert folder.exists() == (fault != "missing folder")
    if fault == "corrupt database":
        assert database.read_bytes() == b"this is not a database" * 100
    else:
        assert not database.exists()


def test_long_and_many_params_kept(train_job, store_uri):
    # "notes." plus 245 characters passes MLflow's 250-character key limit.
    # Much longer keys stop Hydra itself, which probes each override key as
    # a file name (at most 255 bytes on Linux).
    long_key = "k" * 245
    big_value = "v" * 7000
    many = [f"+notes.key{i}={i}" for i in range(300)]
    _, run = train_job("task=sum", "trainer.epochs=2", f"+notes.{long_key}=1",
                       f"+notes.big={big_value}", *many)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert all(params[f"notes.key{i}"] == str(i) for i in range(300))
    assert f"notes.{long_key}" not in params
    assert "notes.big" not in params
    omitted = json.loads(run.data.tags["params.omitted"])
    assert set(omitted) == {f"notes.{long_key}", "notes.big"}
    client = MlflowClient(store_uri)
    config = Path(client.download_artifacts(run.info.run_id, "config_resolved.yaml")).read_text()
    assert big_value in config
    assert long_key in config


@pytest.mark.slow
def test_parallel_sweeps_lose_nothing(tmp_path):
    # A fresh store each time: first-time set-up is where parallel workers race.
    for repetition in range(3):
        store_uri = f"sqlite:///{tmp_path / f'store{repetition}' / 'mlflow.db'}"
        (tmp_path / f"store{repetition}").mkdir()
        result = run_cli(["-m", "src.train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                          "device=cpu", "optimizer.lr=0.01,0.03,0.1", "seed=0,1", "trainer.epochs=6",
                          f"tracking.uri={store_uri}",
                          f"hydra.sweep.dir={tmp_path / f'sweep{repetition}'}"])
        assert result.returncode == 0, result.stderr
        parents, children, stray = runs_by_role(store_uri)
        assert len(parents) == 1
        assert len(children) == 6
        assert stray == []
        for child in children:
            assert child.info.status == "FINISHED"
            assert metric_history(store_uri, child.info.run_id)[1] == list(range(6))


def test_job_errors_survive_pickling():
    # joblib and submitit send a failed job's exception back to the sweep by
    # pickling it; an exception that fails to unpickle aborts the whole sweep.
    import pickle

    from src.config import ConfigError
    from src.trainer import DivergenceError

    for error in (ConfigError("device.name", "mps", "cpu", "choose device=cpu"),
                  DivergenceError(3, math.inf, 5.0, 0.97)):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
