"""Train the lecture's linear model by gradient descent and record the run.

    python -m src.train                      # task=sum, the lecture's cells 156-157
    python -m src.train task=intro optimizer=inplace device=cpu
    python -m src.train -m optimizer.lr=0.003,0.01,0.03 seed=0,1

The steps follow the lecture: data, model, update rule, epochs, record.
`main` returns the final error, so sweepers can minimise it.
"""

import atexit
import gc
import json
import logging
import math
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import List

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src.config import ConfigError, check_override_keys, register_configs, validate
from src.console import EpochReporter
from src.devices import choose_device
from src.model import IntroModel
from src.plots import plot_error_curves
from src.store import StoreError, check_store, prepare_experiment, resolve_uri, ui_command, ui_link
from src.sweep import parent_for_job
from src.task import DTYPES, make_task_data
from src.theory import compare_with_theory, lr_stability_bound
from src.tracking import (
    config_params, interrupts_as_exceptions, recording, run_name, run_tags, start_run,
)
from src.trainer import DivergenceError, full_data_error, train_epochs
from src.updates import make_update

log = logging.getLogger("src.train")

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Train one job; return its final error."""
    _freeze_heap_at_exit()  # in joblib workers too, where only main() runs
    hydra_cfg = HydraConfig.get()
    overrides = list(hydra_cfg.overrides.task)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        validate(cfg, dict(hydra_cfg.runtime.choices))
        device = choose_device(cfg.device.name, cfg.device.strict)
        uri = resolve_uri(cfg.tracking.uri) if cfg.tracking.enabled else None
        if uri:
            check_store(uri)
    except (ConfigError, StoreError) as error:
        return _reject(cfg, overrides, error, in_sweep)

    try:
        with interrupts_as_exceptions():
            return train(cfg, device, uri, overrides, Path(hydra_cfg.runtime.output_dir), in_sweep)
    except DivergenceError:
        # A sweep records the failed job and goes on; a single run has
        # already logged why it stopped.
        if in_sweep:
            raise
        raise SystemExit(1) from None


def train(cfg: DictConfig, device: torch.device, uri, overrides, output_dir: Path,
          in_sweep: bool = False) -> float:
    dtype = DTYPES[cfg.device.dtype]
    log.info("Training task '%s' with the %s update, lr=%g, on %s (requested: %s).",
             cfg.task.name, cfg.optimizer.name, cfg.optimizer.lr, device, cfg.device.name)

    # Data: drawn once and placed on the device before the first epoch.
    data = make_task_data(cfg.task, cfg.seed, device, cfg.device.dtype)
    n_outputs, n_inputs = data.true_weight.shape

    # Model: the lecture's IntroModel, seeded, or started from given values.
    torch.manual_seed(cfg.seed)
    model = IntroModel(n_inputs, n_outputs).to(device=device, dtype=dtype)
    if cfg.model.init_weight is not None or cfg.model.init_bias is not None:
        with torch.no_grad():
            if cfg.model.init_weight is not None:
                model.weight.copy_(torch.tensor(OmegaConf.to_container(cfg.model.init_weight)))
            if cfg.model.init_bias is not None:
                model.bias.copy_(torch.tensor(OmegaConf.to_container(cfg.model.init_bias)))
    # The start values, kept for the theory set beside the run after training.
    start = (model.weight.detach().clone(), model.bias.detach().clone())

    # Update rule, and the largest learning rate that still converges here.
    update = make_update(cfg.optimizer.name, model, cfg.optimizer.lr)
    lr_bound = lr_stability_bound(data.inputs, n_outputs, cfg.trainer.batch_size)
    if cfg.optimizer.lr >= lr_bound:
        log.warning("optimizer.lr=%g is at or above the stability bound %.4g for this data "
                    "at this batch size, so the error may grow instead of shrink.",
                    cfg.optimizer.lr, lr_bound)

    # Record: one MLflow run for this job.
    recorder = None
    if uri:
        recorder = _open_run(cfg, uri, str(device), overrides)
        recorder.log_metric("lr_stability_bound", lr_bound)

    # Epochs.
    reporter = EpochReporter(cfg.trainer.epochs, cfg.trainer.epoch_lines_max, in_sweep=in_sweep)

    observed: List[float] = []

    def on_epoch(epoch: int, error: float) -> None:
        observed.append(error)
        reporter(epoch, error)
        if recorder:
            recorder.log_metric("error", error, step=epoch)

    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    try:
        with recording(recorder) if recorder else nullcontext():
            try:
                history = train_epochs(
                    model, update.step, data, cfg.trainer.epochs, cfg.trainer.batch_size,
                    cfg.trainer.shuffle, cfg.trainer.drop_last, generator, on_epoch,
                    cfg.optimizer.lr, lr_bound,
                )
                # With no epochs, the final error is the start's, on all the data.
                final_error = history[-1] if history else full_data_error(model, data)
                if not in_sweep:
                    _report_coefficients(model, data)
                if recorder:
                    _record_results(recorder, model, data, history, final_error, output_dir, cfg, start)
            except BaseException as error:
                # A stopped run keeps what it has, before it ends FAILED or
                # KILLED: the theory for its data and finished epochs, the
                # error curve, its config and its log.
                if recorder:
                    _record_stopped_run(recorder, data, start, model, observed, output_dir, cfg, error)
                raise
    except KeyboardInterrupt as interrupt:
        reporter.interrupted()
        name = getattr(interrupt, "signal_name", "SIGINT")
        where = f"; run {recorder.run_id} ended KILLED with what it logged kept" if recorder else ""
        log.error("Interrupted by %s%s.", name, where)
        raise SystemExit(143 if name == "SIGTERM" else 130) from None
    except DivergenceError as error:
        where = f" Run {recorder.run_id} ended FAILED with the finite epochs kept." if recorder else ""
        log.error("%s%s", error, where)
        raise

    if in_sweep:
        # One line per job: parallel jobs' lines interleave, so each names its job.
        override_text = " ".join(override.replace("\\", "") for override in overrides)
        log.info("Job %s (%s): final error %.6g after %d epochs; weight %s, bias %s%s.",
                 HydraConfig.get().job.num, override_text, final_error, len(history),
                 _rounded(model.weight.detach().cpu().tolist()),
                 _rounded(model.bias.detach().cpu().tolist()),
                 f"; run {recorder.run_id}" if recorder else "")
    elif recorder:
        _report_location(recorder, uri)
    return final_error


def _open_run(cfg: DictConfig, uri: str, actual_device: str, overrides):
    parent = parent_for_job()
    experiment_id = parent["experiment_id"] if parent else prepare_experiment(uri, cfg.tracking.experiment)
    recorder = start_run(
        uri, experiment_id, run_name(cfg, overrides), run_tags(cfg, actual_device, overrides),
        parent["run_id"] if parent else None, cfg.tracking.flush_interval_s,
    )
    recorder.experiment_id = experiment_id
    recorder.log_params(config_params(cfg))
    return recorder


def _report_coefficients(model: IntroModel, data) -> None:
    weight = model.weight.detach().cpu().tolist()
    bias = model.bias.detach().cpu().tolist()
    log.info("Learned weight %s and bias %s (true: weight %s, bias %s).",
             _rounded(weight), _rounded(bias),
             _rounded(data.true_weight.cpu().tolist()), _rounded(data.true_bias.cpu().tolist()))


def _rounded(values):
    if isinstance(values, list):
        return [_rounded(v) for v in values]
    return round(values, 6)


def _record_results(recorder, model, data, history, final_error: float, output_dir: Path,
                    cfg: DictConfig, start) -> None:
    """Log the learned coefficients, the theory beside them, the error curve,
    the config and Hydra's files."""
    weight = model.weight.detach().cpu()
    bias = model.bias.detach().cpu()
    coefficients = {}
    for row in range(weight.shape[0]):
        for col in range(weight.shape[1]):
            coefficients[f"weight.{row}.{col}"] = weight[row, col].item()
        coefficients[f"bias.{row}"] = bias[row].item()
    recorder.log_metrics(coefficients)
    recorder.log_metric("final_error", final_error)

    theory = _record_theory(recorder, data, start, model, history, cfg)

    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "coefficients.json").write_text(json.dumps({
        "learned": {"weight": weight.tolist(), "bias": bias.tolist()},
        "true": {"weight": data.true_weight.cpu().tolist(), "bias": data.true_bias.cpu().tolist()},
        "optimum": {"weight": theory.optimum.weight.tolist(), "bias": theory.optimum.bias.tolist()},
    }, indent=2))
    recorder.client.log_artifact(recorder.run_id, str(output_dir / "coefficients.json"))
    _record_curve(recorder, history, theory.predicted_errors, output_dir, cfg)
    _record_files(recorder, output_dir, cfg)


def _record_stopped_run(recorder, data, start, model, observed, output_dir: Path,
                        cfg: DictConfig, error: BaseException) -> None:
    """Record what a diverged, interrupted or crashed run has, each step on
    its own, so one failing step does not lose the others."""
    predicted = None
    if isinstance(error, (DivergenceError, KeyboardInterrupt)):
        try:
            predicted = _record_theory(recorder, data, start, model, observed, cfg).predicted_errors
        except Exception as theory_error:
            log.warning("Could not compute the theory of the stopped run: %s", theory_error)
    if isinstance(error, DivergenceError):
        stopped = f"diverged in epoch {error.epoch}"
    elif isinstance(error, KeyboardInterrupt):
        stopped = f"interrupted after {len(observed)} epochs"
    else:
        stopped = f"failed after {len(observed)} epochs"
    for step in (lambda: _record_curve(recorder, observed, predicted, output_dir, cfg, stopped),
                 lambda: _record_files(recorder, output_dir, cfg)):
        try:
            step()
        except Exception as record_error:
            log.warning("Could not record a file of the stopped run %s: %s", recorder.run_id, record_error)


def _record_curve(recorder, history, predicted, output_dir: Path, cfg: DictConfig,
                  stopped: str = "") -> None:
    """Plot the observed error per epoch, with the theory's prediction beside it."""
    if not history:
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    curves = {"observed": history}
    if predicted:
        curves["predicted (theory)"] = predicted[:len(history)]
    title = f"{cfg.task.name}, {cfg.optimizer.name} update, lr={cfg.optimizer.lr:g}"
    plot_error_curves(curves, output_dir / "error_curve.png",
                      f"{title} ({stopped})" if stopped else title, dashed=["predicted (theory)"])
    recorder.client.log_artifact(recorder.run_id, str(output_dir / "error_curve.png"))


def _record_files(recorder, output_dir: Path, cfg: DictConfig) -> None:
    """Log the resolved config, and Hydra's composed config, overrides and
    the job's log under hydra/."""
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config_resolved.yaml", resolve=True)
    recorder.flush()
    client = recorder.client
    client.log_artifact(recorder.run_id, str(output_dir / "config_resolved.yaml"))
    if (output_dir / ".hydra").is_dir():
        client.log_artifacts(recorder.run_id, str(output_dir / ".hydra"), artifact_path="hydra/.hydra")
    for log_file in output_dir.glob("*.log"):
        client.log_artifact(recorder.run_id, str(log_file), artifact_path="hydra")


def _record_theory(recorder, data, start, model, history, cfg: DictConfig):
    """Log the least-squares optimum of the run's data and the predicted
    contraction of the error beside the observed one."""
    theory = compare_with_theory(data, start, model, history, cfg.optimizer.lr,
                                 cfg.trainer.batch_size, cfg.trainer.drop_last)
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        log.info(theory.summary())
    for key, value, step in theory.metrics():
        # A diverged model's distances are inf or nan; the store keeps only
        # finite values, so they are left out here without a warning each.
        if math.isfinite(value):
            recorder.log_metric(key, value, step)
    return theory


def _report_location(recorder, uri: str) -> None:
    log.info("Run %s stored in %s (experiment id %s).", recorder.run_id, uri, recorder.experiment_id)
    if uri.startswith(("http://", "https://")):
        log.info("Open it: %s", ui_link(uri, recorder.experiment_id, recorder.run_id))
    else:
        log.info("Open it: %s, then %s", ui_command(uri),
                 ui_link("http://127.0.0.1:5000", recorder.experiment_id, recorder.run_id))


def _reject(cfg: DictConfig, overrides, error: Exception, in_sweep: bool) -> float:
    """Report a config or store error in one line.

    A single run exits with status 2 and creates nothing. A sweep job raises,
    so the sweep records it as a FAILED child and goes on with its other jobs.
    """
    if not in_sweep:
        log.error("%s", error)
        raise SystemExit(2)
    _record_failed_job(cfg, overrides, error)
    raise error


def _record_failed_job(cfg: DictConfig, overrides, error: Exception) -> None:
    """Give a sweep job that failed its checks a FAILED child run, so the
    sweep's record counts it."""
    parent = parent_for_job()
    if parent is None:
        return
    try:
        recorder = start_run(parent["uri"], parent["experiment_id"], run_name(cfg, overrides),
                             {"hydra.overrides": json.dumps(overrides)}, parent["run_id"], 5.0)
    except Exception as store_error:  # the store itself may be what failed
        log.error("Could not record the failed job: %s", store_error)
        return
    recorder.set_tags({"failure": f"{type(error).__name__}: {error}"})
    recorder.end("FAILED")


def _freeze_heap_at_exit() -> None:
    """Register gc.freeze() to run at exit, once per process.

    Freezing moves the live objects out of the collector's reach, so the
    collections during interpreter shutdown skip them. With torch, mlflow and
    matplotlib loaded they took about 1.3 s of a 2-core CPU; atexit handlers
    and file flushes still run as before.
    """
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


if __name__ == "__main__":
    _freeze_heap_at_exit()  # a multirun's parent process may run no job itself
    try:
        check_override_keys(sys.argv[1:])
    except ConfigError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        sys.exit(2)
    main()
