"""Theory beside the runs: the least-squares optimum, the predicted contraction
of the error, and the learning-rate stability bound."""

import math

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from conftest import compose_config, metric_history
from src.theory import least_squares_optimum, lr_stability_bound, predict_errors

THEORY_METRICS = ("optimum_error", "optimum_distance", "true_map_distance",
                  "contraction_predicted", "contraction_observed", "contraction_asymptotic")


@pytest.fixture(scope="module")
def sum_run(tmp_path_factory):
    """The lecture's cells 156-157 as `task=sum` runs them (lr 0.01, batches
    of 1000, 50 epochs), trained once; returns (store URI, run)."""
    from mlflow import MlflowClient

    import src.train

    folder = tmp_path_factory.mktemp("sum")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    src.train.main(compose_config([f"tracking.uri={uri}", "device=cpu", "task=sum"], folder / "job"))
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("descent-lab").experiment_id])
    yield uri, run
    HydraConfig.instance().cfg = None
    GlobalHydra.instance().clear()


def test_sum_run_carries_theory_metrics(sum_run):
    _, run = sum_run
    for key in THEORY_METRICS:
        assert key in run.data.metrics, key


def test_sum_contraction_predicted_within_2_percent(sum_run):
    metrics = sum_run[1].data.metrics
    # Every epoch's error lies above the float32 floor, so all 50 are compared.
    assert metrics["contraction_epochs"] == 50
    assert metrics["contraction_predicted"] == pytest.approx(metrics["contraction_observed"], rel=0.02)


@pytest.mark.parametrize("overrides", [
    ("optimizer.lr=0.005", "trainer.batch_size=500", "seed=1"),
    ("optimizer.lr=0.02", "trainer.batch_size=2000", "task.noise_std=0.1", "seed=2"),
])
def test_sum_contraction_within_2_percent_for(train_job, store_uri, overrides):
    _, run = train_job("task=sum", *overrides)
    metrics = run.data.metrics
    assert metrics["contraction_epochs"] >= 5
    assert metrics["contraction_predicted"] == pytest.approx(metrics["contraction_observed"], rel=0.02)


def test_sum_contraction_near_lecture_ratio(sum_run):
    # The lecture's cell 157 shows the error shrinking by about 0.665 per
    # epoch. S is close to the identity, so the prediction is near (1 - 0.02)^20.
    metrics = sum_run[1].data.metrics
    assert metrics["contraction_predicted"] == pytest.approx(0.665, rel=0.02)
    assert metrics["contraction_asymptotic"] == pytest.approx(0.98 ** 20, rel=0.03)


def test_predicted_curve_logged_per_epoch(sum_run):
    uri, run = sum_run
    observed, steps = metric_history(uri, run.info.run_id)
    predicted, predicted_steps = metric_history(uri, run.info.run_id, "error_predicted")
    assert predicted_steps == steps == list(range(50))
    # Epoch 0 depends only on the start and the data, so it matches closely.
    assert predicted[0] == pytest.approx(observed[0], rel=0.01)
    assert predicted[-1] == pytest.approx(observed[-1], rel=0.05)


def test_optimum_error_is_noise_variance(train_job, store_uri):
    # Targets with Gaussian noise of std 0.1: the optimum's error on 10 000
    # samples is close to the noise variance 0.01, and training reaches it.
    _, run = train_job("task=sum", "task.noise_std=0.1", "trainer.epochs=100", "optimizer.lr=0.05")
    metrics = run.data.metrics
    assert metrics["optimum_error"] == pytest.approx(0.01, rel=0.05)
    assert metrics["optimum_distance"] < 1e-3
    # The noise moves the optimum away from the true map.
    assert metrics["true_map_distance"] > metrics["optimum_distance"]


def test_lr_above_bound_warns_once(train_job, store_uri, caplog):
    # The sum task trains in batches of 1000, and the warning names the bound
    # for that batch size.
    bound = lr_stability_bound(_sum_inputs(), 1, batch_size=1000)
    _, run = train_job("task=sum", "optimizer.lr=1.0", "trainer.epochs=2")
    assert bound < 1.0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert "stability bound" in warnings[0]
    assert f"{bound:.4g}" in warnings[0]
    assert run.data.metrics["contraction_predicted"] > 1
    assert run.data.metrics["contraction_observed"] > 1


def test_lr_below_bound_does_not_warn(train_job, store_uri, caplog):
    train_job("task=sum", "optimizer.lr=0.5", "trainer.epochs=2")
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_optimum_nearest_start_on_one_point():
    # One point leaves a line of exact fits. Gradient descent from the start
    # moves along [x, 1] only, so it ends at the fit nearest the start.
    inputs = torch.tensor([[3.1415]])
    targets = torch.tensor([[2 * 3.1415, -3.1415 + 3]])
    start_weight = torch.tensor([[-0.9958], [-0.6654]])
    start_bias = torch.tensor([-0.1951, 0.9628])
    optimum = least_squares_optimum(inputs, targets, start_weight, start_bias)
    assert optimum.error < 1e-20
    moved_weight = optimum.weight - start_weight.double()
    moved_bias = optimum.bias - start_bias.double()
    for row in range(2):
        # The move is parallel to [x, 1] = [3.1415, 1].
        assert moved_weight[row, 0].item() == pytest.approx(3.1415 * moved_bias[row].item())


def test_predicted_errors_single_point_closed_form():
    # One point x, two outputs: each step scales the error by
    # (1 - (2 lr / 2) (x^2 + 1))^2, the cell 149 ratio 0.79443.
    inputs = torch.tensor([[3.1415]])
    targets = torch.tensor([[2 * 3.1415, -3.1415 + 3]])
    start_weight = torch.tensor([[-0.9958], [-0.6654]])
    start_bias = torch.tensor([-0.1951, 0.9628])
    optimum = least_squares_optimum(inputs, targets, start_weight, start_bias)
    errors, asymptotic = predict_errors(inputs, optimum, start_weight, start_bias,
                                        lr=0.01, batch_size=1, drop_last=True, epochs=3)
    x = inputs[0, 0].item()  # 3.1415 as float32 stores it
    factor = (1 - 0.01 * (x ** 2 + 1)) ** 2
    assert asymptotic == pytest.approx(factor, rel=1e-12)
    assert errors[1] / errors[0] == pytest.approx(factor, rel=1e-9)
    start_error = torch.mean((targets - (inputs @ start_weight.T + start_bias)) ** 2).item()
    assert errors[0] == pytest.approx(start_error, rel=1e-5)


def test_predicted_errors_grow_above_bound():
    inputs = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0))
    targets = inputs.sum(dim=1, keepdim=True)
    optimum = least_squares_optimum(inputs, targets)
    bound = lr_stability_bound(inputs, 1)
    errors, asymptotic = predict_errors(inputs, optimum, torch.zeros(1, 2), torch.zeros(1),
                                        lr=1.1 * bound, batch_size=1000, drop_last=True, epochs=5)
    assert asymptotic > 1
    assert all(later > earlier for earlier, later in zip(errors, errors[1:]))
    assert all(math.isfinite(error) for error in errors)


def _sum_inputs():
    from omegaconf import OmegaConf

    from src.task import make_task_data

    task = OmegaConf.create({"weight": [[1.0, 1.0]], "bias": [0.0], "n_samples": 10000,
                             "input_distribution": "normal", "inputs": None, "noise_std": 0.0})
    return make_task_data(task, seed=0, device=torch.device("cpu")).inputs


def test_single_sample_bound_uses_largest_norm():
    # A step on one sample a = [x, 1] overshoots once lr > m / |a|^2, so the
    # batch-size-1 bound is m over the largest |a|^2, far below the full-batch one.
    inputs = torch.randn(100, 1, generator=torch.Generator().manual_seed(0))
    full_batch = lr_stability_bound(inputs, 2)
    single = lr_stability_bound(inputs, 2, batch_size=1)
    largest_norm = (inputs.double() ** 2 + 1).max().item()
    assert single == pytest.approx(2 / largest_norm)
    assert single < full_batch


def test_batch_bound_between_single_and_full():
    inputs = torch.randn(10_000, 2, generator=torch.Generator().manual_seed(1))
    full_batch = lr_stability_bound(inputs, 1)
    batches = lr_stability_bound(inputs, 1, batch_size=1000)
    single = lr_stability_bound(inputs, 1, batch_size=1)
    assert single < batches <= full_batch
    # Batches of 1000 standard-normal rows have second moments close to S.
    assert batches > 0.8 * full_batch
