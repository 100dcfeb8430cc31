"""The MLflow store: which URI a run goes to, and the checks and set-up done
before training so a broken store fails fast with a clear message.

Default: the SQLite database mlruns/mlflow.db at the project root, with
artifacts in mlruns/. MLflow 3 has no plain `file:` store, and its own default
(./mlflow.db in the working directory) would scatter runs across folders.
"""

import os
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from src import PROJECT_ROOT

SQLITE_PREFIX = "sqlite:///"
SQLITE_HEADER = b"SQLite format 3\x00"

# MLflow retries an unreachable server for minutes by default. Bounded here
# so a failing store fails the job within seconds; the environment can still
# set other values.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
# MLflow prints its own run links for server stores, without the query
# parameter that opens the runs table; the project prints its own links.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


class StoreError(RuntimeError):
    """The tracking store cannot be used; raised before training starts."""


def default_uri() -> str:
    return f"{SQLITE_PREFIX}{PROJECT_ROOT / 'mlruns' / 'mlflow.db'}"


def resolve_uri(configured: Optional[str]) -> str:
    """tracking.uri if set, else MLFLOW_TRACKING_URI, else the project store."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()


def sqlite_path(uri: str) -> Optional[Path]:
    if uri.startswith(SQLITE_PREFIX):
        return Path(uri[len(SQLITE_PREFIX):])
    return None


def artifact_root(uri: str) -> Optional[str]:
    """Artifacts of a SQLite store live in the database's folder; a server
    chooses its own artifact root."""
    path = sqlite_path(uri)
    return path.resolve().parent.as_uri() if path else None


def ui_command(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    path = sqlite_path(uri)
    if path and path.resolve() == (PROJECT_ROOT / "mlruns" / "mlflow.db"):
        return "mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db  (from the project root)"
    return f"mlflow ui --backend-store-uri {uri}"


def ui_link(base: str, experiment_id: str, run_id: Optional[str] = None) -> str:
    """Build a link that opens the runs table. MLflow 3.17 opens an experiment
    in its GenAI view unless the link sets workflowType=machine_learning."""
    page = f"#/experiments/{experiment_id}"
    if run_id:
        page += f"/runs/{run_id}"
    return f"{base.rstrip('/')}/{page}?workflowType=machine_learning"


def check_store(uri: str) -> None:
    """Raise StoreError if the store cannot take a run; never create a store
    in a place the user did not name."""
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
        return
    path = sqlite_path(uri)
    if path is None:
        if uri.startswith("file:") or "://" not in uri:
            raise StoreError(
                f"Tracking URI {uri!r} is a file store, which MLflow 3 no longer supports. "
                f"Use a SQLite store such as {default_uri()!r}."
            )
        return
    _check_sqlite(path, uri)


def _check_server(uri: str) -> None:
    health = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=5) as response:
            response.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise StoreError(
            f"The MLflow server at {uri} did not respond ({reason}). Start it, check "
            f"tracking.uri, or use the local store by passing tracking.uri=null "
            f"(and unsetting MLFLOW_TRACKING_URI)."
        ) from None


def _check_sqlite(path: Path, uri: str) -> None:
    folder = path.parent
    if not folder.is_dir():
        raise StoreError(
            f"The store folder {folder} does not exist, so {uri} cannot be opened. "
            f"Create it with `mkdir -p {folder}` or point tracking.uri at another store."
        )
    # Root can write to a folder without write bits; honour the bits anyway,
    # since clearing them is how a user marks a store read-only.
    mode = stat.S_IMODE(folder.stat().st_mode)
    if not mode & 0o222 or not os.access(folder, os.W_OK):
        raise StoreError(
            f"The store folder {folder} is read-only. Make it writable "
            f"(chmod u+w {folder}) or point tracking.uri at another store."
        )
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as database:
            header = database.read(len(SQLITE_HEADER))
        if header != SQLITE_HEADER:
            raise StoreError(
                f"{path} is not an SQLite database (corrupt or another kind of file). "
                f"Move it aside to start a fresh store, or point tracking.uri elsewhere."
            )


def prepare_experiment(uri: str, name: str) -> str:
    """Create the store's tables and the experiment if needed; return its id.

    Run once before jobs are dispatched: several processes migrating a fresh
    SQLite store at once race and can leave it unreadable (MLflow 3.17).
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    path = sqlite_path(uri)
    try:
        if path is not None:
            # The store object, unlike MlflowClient, takes the artifact root,
            # so new experiments keep their artifacts beside the database.
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            store = SqlAlchemyStore(uri, artifact_root(uri))
            experiment = store.get_experiment_by_name(name)
            if experiment is None:
                return store.create_experiment(name)
            return experiment.experiment_id

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            return client.create_experiment(name)
        return experiment.experiment_id
    except MlflowException as error:
        if "already exists" in str(error):
            return MlflowClient(uri).get_experiment_by_name(name).experiment_id
        raise StoreError(f"The store {uri} could not be opened: {error}") from None
    except Exception as error:  # sqlalchemy errors for damaged databases
        if type(error).__module__.startswith("sqlalchemy"):
            raise StoreError(
                f"The store {uri} could not be opened ({type(error).__name__}: {error}). "
                f"Move the database aside or point tracking.uri elsewhere."
            ) from None
        raise
