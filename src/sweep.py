"""Parent runs for multiruns.

Before Hydra dispatches any job, `SweepRunCallback.on_multirun_start` creates
the store and the experiment once (parallel first-time set-up races in MLflow
3.17) and opens the sweep's parent run. It writes the parent's id into the
sweep folder, where every job reads it, whichever launcher started the job:
the basic launcher in this process, joblib workers, or submitit jobs on other
machines of a cluster that share the folder. MLFLOW_RUN_ID is not used for
this, because a child that resumes the parent's run ends it.

At the end, or at exit when a failed job makes Hydra stop first, the parent
gets a summary of its children and ends FINISHED, FAILED or KILLED.
"""

import atexit
import json
import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

PARENT_FILE = "parent_run.json"


def parent_for_job() -> Optional[Dict[str, str]]:
    """Return the parent run's record for a job of a multirun, else None."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    path = Path(hydra_cfg.sweep.dir) / PARENT_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


def find_children(client, experiment_id: str, parent_run_id: str) -> list:
    return client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        max_results=50000,
    )


def job_overrides(run) -> Dict[str, str]:
    """Return the job's command-line overrides as a dict of key to value."""
    overrides = json.loads(run.data.tags.get("hydra.overrides", "[]"))
    return dict(override.lstrip("+~").partition("=")[::2] for override in overrides)


def differing_overrides(runs: list) -> List[str]:
    """Return the override keys whose values differ between the runs, which
    are the keys the sweep varied."""
    per_run = [job_overrides(run) for run in runs]
    keys = sorted({key for overrides in per_run for key in overrides})
    return [key for key in keys if len({overrides.get(key) for overrides in per_run}) > 1]


def summarize_children(children: list) -> Dict[str, Any]:
    """Count the children by status and find the best final error."""
    summary: Dict[str, Any] = {"jobs": len(children), "FINISHED": 0, "FAILED": 0, "KILLED": 0, "RUNNING": 0}
    varied = differing_overrides(children)
    best_error, best_overrides = math.inf, ""
    for child in children:
        status = child.info.status
        summary[status] = summary.get(status, 0) + 1
        error = child.data.metrics.get("final_error")
        if status == "FINISHED" and error is not None and error < best_error:
            best_error = error
            overrides = job_overrides(child)
            best_overrides = " ".join(f"{key}={overrides[key]}" for key in varied if key in overrides)
    summary["best_error"] = best_error
    summary["best_overrides"] = best_overrides
    return summary


def _is_swept(override: str) -> bool:
    """Return whether a command-line override sweeps values (a,b or a function)."""
    value = override.partition("=")[2]
    return "," in value and not value.startswith("[") or value.startswith(
        ("range(", "choice(", "interval(", "glob(", "tag("))


class SweepRunCallback(Callback):
    def __init__(self) -> None:
        self.client = None
        self.parent_run_id: Optional[str] = None
        self.experiment_id: Optional[str] = None
        self.ended = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from src.store import check_store, prepare_experiment, resolve_uri
        from src.tracking import git_state

        from src.store import StoreError

        if not config.tracking.enabled:
            return
        uri = resolve_uri(config.tracking.uri)
        try:
            check_store(uri)
            self.experiment_id = prepare_experiment(uri, config.tracking.experiment)
        except StoreError as error:
            # Before any job starts: one clear line, not a traceback.
            log.error("%s", error)
            raise SystemExit(2) from None

        from mlflow import MlflowClient

        self.client = MlflowClient(uri)
        self.uri = uri
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_overrides = list(config.hydra.overrides.task)
        swept = [o for o in sweep_overrides if _is_swept(o)]
        sweeper = config.hydra.sweeper._target_.rsplit(".", 1)[-1]
        launcher = config.hydra.launcher._target_.rsplit(".", 1)[-1]
        commit, dirty = git_state()
        run = self.client.create_run(
            self.experiment_id,
            run_name=" ".join(["sweep", *(swept or [f"with {sweeper}"])]),
            tags={
                "sweep.overrides": json.dumps(sweep_overrides),
                "sweep.sweeper": sweeper,
                "sweep.launcher": launcher,
                "sweep.dir": str(config.hydra.sweep.dir),
                "git.commit": commit,
                "git.dirty": dirty,
                "mlflow.source.name": "python -m src.train -m",
            },
        )
        self.parent_run_id = run.info.run_id

        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_FILE).write_text(json.dumps({
            "run_id": self.parent_run_id, "experiment_id": self.experiment_id, "uri": uri,
        }))
        # Hydra skips on_multirun_end when a job fails, so the parent is also
        # ended at exit.
        atexit.register(self._end_parent, normal_end=False)
        log.info("Sweep parent run %s in experiment '%s' (%s)",
                 self.parent_run_id, config.tracking.experiment, uri)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._end_parent(normal_end=True)

    def _end_parent(self, normal_end: bool) -> None:
        if self.parent_run_id is None or self.ended:
            return
        self.ended = True
        from mlflow.entities import Metric, RunTag

        from src.recorder import _now_ms
        from src.store import default_uri, ui_command, ui_link

        summary = summarize_children(find_children(self.client, self.experiment_id, self.parent_run_id))
        tags = [RunTag(f"sweep.{key}", str(value)) for key, value in summary.items()]
        metrics = [Metric("jobs_finished", summary["FINISHED"], _now_ms(), 0),
                   Metric("jobs_failed", summary["FAILED"], _now_ms(), 0)]
        if math.isfinite(summary["best_error"]):
            metrics.append(Metric("best_error", summary["best_error"], _now_ms(), 0))
        self.client.log_batch(self.parent_run_id, metrics=metrics, tags=tags)
        # The sweep's composed config, as Hydra saved it.
        multirun_config = self.sweep_dir / "multirun.yaml"
        if multirun_config.exists():
            self.client.log_artifact(self.parent_run_id, str(multirun_config), artifact_path="hydra")

        # A sweep that ran to its end is FINISHED, its failed jobs counted in
        # the summary (an Optuna search expects some trials to diverge). One
        # that Hydra stopped early is KILLED when a job was interrupted, else
        # FAILED.
        if normal_end:
            status = "FINISHED"
        elif summary["KILLED"]:
            status = "KILLED"
        else:
            status = "FAILED"
        self.client.set_terminated(self.parent_run_id, status=status)

        best = (f"best final error {summary['best_error']:.6g} with {summary['best_overrides'] or 'its settings'}"
                if math.isfinite(summary["best_error"]) else "no finished job")
        message = (f"Sweep done: {summary['jobs']} jobs, {summary['FINISHED']} finished, "
                   f"{summary['FAILED']} failed, {summary['KILLED']} killed; {best}. "
                   f"Parent run {self.parent_run_id} ended {status}.")
        # At exit, logging may already be shut down; print reaches the user.
        print(message, flush=True)
        print(f"Compare the jobs: python -m src.compare --parent {self.parent_run_id}"
              + ("" if self.uri == default_uri() else f" --uri {self.uri}"), flush=True)
        base = self.uri if self.uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
        opener = "" if base == self.uri else f"{ui_command(self.uri)}, then "
        print(f"Open it: {opener}{ui_link(base, self.experiment_id, self.parent_run_id)}", flush=True)
