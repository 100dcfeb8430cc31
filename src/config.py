"""Typed config schema and the range checks that run before any run exists.

The dataclasses are registered in Hydra's ConfigStore as `train_schema`, so a
wrong type or an unknown key fails while Hydra composes the config. `validate`
then checks values and their relations (ranges, shapes, group choices) and
raises `ConfigError`, which names the key, the value, the valid range and the
fix.
"""

import difflib
import math
import secrets
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from src import PROJECT_ROOT

UPDATE_STYLES = ("reassign", "inplace", "sgd")
DEVICE_NAMES = ("cpu", "mps", "cuda", "auto")
DTYPES = ("float32", "float64")
INPUT_DISTRIBUTIONS = ("normal", "uniform")


@dataclass
class TaskConfig:
    # The target map y = weight @ x + bias; weight is out x in. Matrices are
    # typed List[Any] because OmegaConf 2.3 rejects ints merged into a
    # List[List[float]]; validate() checks their entries instead.
    name: str = MISSING
    weight: List[Any] = MISSING
    bias: List[float] = MISSING
    n_samples: int = 100
    # "normal": standard normal inputs (the lecture); "uniform": U(-1, 1).
    input_distribution: str = "normal"
    # Standard deviation of Gaussian noise added to the targets; 0 gives the
    # lecture's exact targets.
    noise_std: float = 0.0
    # Fixed input rows in place of random ones, for replaying the lecture's
    # single-point cells; null draws n_samples rows from the distribution.
    inputs: Optional[List[Any]] = None


@dataclass
class OptimizerConfig:
    # The update style: reassign (the lecture), inplace or sgd.
    name: str = MISSING
    lr: float = 0.01


@dataclass
class DeviceConfig:
    name: str = "auto"
    # strict: fail when the requested device is missing instead of falling
    # back to the CPU.
    strict: bool = False
    dtype: str = "float32"


@dataclass
class TrackingConfig:
    # null: MLFLOW_TRACKING_URI if set, else the SQLite store in mlruns/.
    uri: Optional[str] = None
    experiment: str = "descent-lab"
    enabled: bool = True
    # Seconds between batched writes while a run trains.
    flush_interval_s: float = 5.0
    # null: a name built from the task, the update style and the overrides.
    run_name: Optional[str] = None


@dataclass
class TrainerConfig:
    epochs: int = 30
    batch_size: int = 1
    shuffle: bool = True
    # The lecture drops the last incomplete batch of each epoch.
    drop_last: bool = True
    # Runs with at most this many epochs print one line per epoch; longer
    # runs show a progress line.
    epoch_lines_max: int = 100


@dataclass
class ModelConfig:
    # Initial parameters; null keeps torch.nn.Linear's seeded random init.
    init_weight: Optional[List[Any]] = None
    init_bias: Optional[List[float]] = None


@dataclass
class TrainConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 0
    # Free-form values recorded as params with the run, for example
    # +notes.hypothesis="lr 0.1 converges in 10 epochs". The only node that
    # accepts new keys.
    notes: Dict[str, Any] = field(default_factory=dict)


def register_configs() -> None:
    """Register the schema and the resolvers that conf/train.yaml uses."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    OmegaConf.register_new_resolver(
        "project_root", lambda: str(PROJECT_ROOT), replace=True
    )
    # A random suffix keeps the working folders of two jobs started in the
    # same second apart. Cached, so every reference in one config agrees, and
    # Hydra copies the cache into each job's config.
    OmegaConf.register_new_resolver(
        "unique_suffix", lambda: secrets.token_hex(3), use_cache=True, replace=True
    )


class ConfigError(ValueError):
    """A config value outside its valid range, raised before any run exists."""

    def __init__(self, key: str, value: Any, valid: str, fix: str = "",
                 problem: str = "Invalid value for") -> None:
        self.key = key
        self.value = value
        message = f"{problem} '{key}': {value!r}. Valid: {valid}."
        if fix:
            message += f" Fix: {fix}"
        super().__init__(message)
        self.details = (key, value, valid, fix, problem)

    def __reduce__(self):
        # Parallel launchers pickle a failed job's exception to send it back to
        # the sweep process. The default rebuilds it from the message alone,
        # which this __init__ cannot take.
        return type(self), self.details


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _check_choice(key: str, value: str, options: tuple) -> None:
    if value not in options:
        listed = ", ".join(options)
        raise ConfigError(key, value, f"one of {listed}", f"pass {key}=<one of {listed}>")


def _check_matrix(key: str, rows: Any) -> tuple:
    """Return (n_rows, n_cols) of a rectangular, non-empty matrix of numbers."""
    rows = _plain(rows)
    if not rows or not all(isinstance(row, list) and row for row in rows):
        raise ConfigError(key, rows, "a non-empty list of non-empty rows, e.g. [[1.0, 1.0]]")
    lengths = {len(row) for row in rows}
    if len(lengths) != 1:
        raise ConfigError(
            key, rows, "rows of equal length (a rectangular out x in matrix)",
            f"give every row of {key} the same number of entries",
        )
    if not all(_is_finite_number(v) for row in rows for v in row):
        raise ConfigError(key, rows, "finite numbers")
    return len(rows), lengths.pop()


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_vector(key: str, values: Any, length: int, matches: str) -> None:
    values = _plain(values)
    if len(values) != length:
        numbers = "1 number" if length == 1 else f"{length} numbers"
        raise ConfigError(
            key, values, f"a list of {numbers}, one per row of {matches}",
            f"give {key} exactly {numbers}",
        )
    if not all(_is_finite_number(v) for v in values):
        raise ConfigError(key, values, "finite numbers")


def task_presets() -> List[str]:
    """Return the names of the task presets in conf/task/."""
    return sorted(path.stem for path in (PROJECT_ROOT / "conf" / "task").glob("*.yaml"))


def _unknown_key(full_key: str, value: Any, known: List[str], prefix: str) -> ConfigError:
    """Build the error for a key the schema lacks, naming the closest key."""
    name = full_key[len(prefix):]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {prefix}{close[0]}?" if close else "check the spelling."
    where = f"under {prefix[:-1]}" if prefix else "at the top level"
    return ConfigError(
        full_key, value, f"the keys {where}: {', '.join(known)}",
        f"{hint} Free-form values go under notes, e.g. +notes.{name}=...",
        problem="Unknown key",
    )


def _check_known_keys(cfg: DictConfig, schema: DictConfig, prefix: str = "") -> None:
    """Reject keys the schema does not have. Hydra's `+key=value` adds a key
    even to a typed config, so a typo with `+` would otherwise pass unnoticed."""
    known = [str(k) for k in schema.keys()]
    for key in cfg.keys():
        full_key = f"{prefix}{key}"
        if key not in known:
            raise _unknown_key(full_key, _plain(cfg[key]), known, prefix)
        child, child_schema = cfg._get_node(key), schema._get_node(key)
        if full_key != "notes" and isinstance(child, DictConfig) and isinstance(child_schema, DictConfig):
            _check_known_keys(child, child_schema, f"{full_key}.")


def check_override_keys(arguments: List[str]) -> None:
    """Reject a misspelled key on the command line before Hydra composes.

    For a key the schema lacks, Hydra suggests adding it with `+`, which sends
    a student from one error to the next. This names the key it resembles.
    Group choices (task=sum), Hydra's own keys and keys with a prefix
    (+, ++, ~) are left to Hydra and to validate().
    """
    schema = OmegaConf.structured(TrainConfig)
    groups = {"task", "optimizer", "device", "tracking", "experiment"}
    for argument in arguments:
        key, equals, value = argument.partition("=")
        if (not equals or argument.startswith(("-", "+", "~")) or key in groups
                or key.startswith("hydra") or "/" in key or "@" in key):
            continue
        node, prefix = schema, ""
        for part in key.split("."):
            if prefix == "notes." or not isinstance(node, DictConfig):
                break
            known = [str(k) for k in node.keys()]
            if part not in known:
                raise _unknown_key(f"{prefix}{part}", value, known, prefix)
            node, prefix = node._get_node(part), f"{prefix}{part}."


def validate(cfg: DictConfig, group_choices: Optional[dict] = None) -> None:
    """Check values and their relations; raise ConfigError on the first fault.

    group_choices: Hydra's runtime choices (group -> option). A field override
    that contradicts the chosen group option is rejected, so the style that
    runs is the style recorded.
    """
    _check_known_keys(cfg, OmegaConf.structured(TrainConfig))
    task, optimizer, device, trainer = cfg.task, cfg.optimizer, cfg.device, cfg.trainer

    n_out, n_in = _check_matrix("task.weight", task.weight)
    _check_vector("task.bias", task.bias, n_out, "task.weight")
    if task.n_samples < 1:
        raise ConfigError("task.n_samples", task.n_samples, "an integer >= 1",
                          "pass task.n_samples=1 or more")
    if not math.isfinite(task.noise_std) or task.noise_std < 0:
        raise ConfigError("task.noise_std", task.noise_std, "a finite number >= 0",
                          "pass task.noise_std=0 for exact targets")
    _check_choice("task.input_distribution", task.input_distribution, INPUT_DISTRIBUTIONS)
    if task.inputs is not None:
        rows, cols = _check_matrix("task.inputs", task.inputs)
        if cols != n_in:
            raise ConfigError(
                "task.inputs", _plain(task.inputs),
                f"rows of {n_in} numbers, the input size set by task.weight",
            )

    _check_choice("optimizer.name", optimizer.name, UPDATE_STYLES)
    lr = optimizer.lr
    if not math.isfinite(lr) or lr <= 0:
        raise ConfigError(
            "optimizer.lr", lr, "a finite number > 0",
            "pass a positive learning rate, e.g. optimizer.lr=0.01",
        )

    _check_choice("device.name", device.name, DEVICE_NAMES)
    _check_choice("device.dtype", device.dtype, DTYPES)
    if device.dtype == "float64" and device.name == "mps":
        raise ConfigError(
            "device.dtype", "float64", "float32 on mps (MPS has no float64)",
            "pass device.dtype=float32 or choose device=cpu or device=cuda",
        )

    if trainer.epochs < 0:
        raise ConfigError("trainer.epochs", trainer.epochs, "an integer >= 0 (0 records the start values)",
                          "pass trainer.epochs=0 or more")
    if trainer.batch_size < 1:
        raise ConfigError("trainer.batch_size", trainer.batch_size, "an integer >= 1",
                          "pass trainer.batch_size=1 (the lecture's intro task) or more")
    if cfg.seed < 0:
        raise ConfigError("seed", cfg.seed, "an integer >= 0", "pass seed=0 or another non-negative integer")
    if not cfg.tracking.experiment.strip():
        raise ConfigError("tracking.experiment", cfg.tracking.experiment, "a non-empty name",
                          "pass tracking.experiment=NAME or leave the default descent-lab")
    if cfg.tracking.flush_interval_s <= 0:
        raise ConfigError("tracking.flush_interval_s", cfg.tracking.flush_interval_s, "a number > 0")

    if cfg.model.init_weight is not None:
        shape = _check_matrix("model.init_weight", cfg.model.init_weight)
        if shape != (n_out, n_in):
            raise ConfigError(
                "model.init_weight", _plain(cfg.model.init_weight),
                f"a {n_out} x {n_in} matrix, the shape of task.weight",
            )
    if cfg.model.init_bias is not None:
        _check_vector("model.init_bias", cfg.model.init_bias, n_out, "task.weight")

    choices = group_choices or {}
    chosen_task = choices.get("task")
    if chosen_task and task.name != chosen_task and task.name in task_presets():
        raise ConfigError(
            "task.name", task.name, f"'{chosen_task}' (the preset chosen with task={chosen_task}) "
            f"or a name of your own", f"choose the preset with task={task.name}",
        )
    for group, value in (("optimizer", optimizer.name), ("device", device.name)):
        chosen = choices.get(group)
        if chosen is not None and chosen != value:
            raise ConfigError(
                f"{group}.name", value, f"'{chosen}', the option chosen with {group}={chosen}",
                f"choose the option with {group}={value} instead of overriding {group}.name",
            )
