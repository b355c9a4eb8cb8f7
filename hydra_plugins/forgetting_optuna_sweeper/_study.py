"""The study: checked settings, storage, sampler and pruner.

Storage URLs, as the sweeper records them and passes them to the jobs (`optuna.storage`):
    memory                  in this process only (no resume, no pruning, no other workers)
    journal:/abs/path.log   Optuna's JournalFileBackend; the default when a study is named:
                            `optuna_journal.log` in the sweep folder
    sqlite:////abs/path.db  or any SQLAlchemy URL (postgresql+psycopg://user@host/db) ->
                            RDBStorage, with Optuna's heartbeat (open_storage)
Relative paths are made absolute, so jobs in other folders or on other nodes reach the study.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from hydra_plugins.forgetting_optuna_sweeper._errors import SweeperError, bad_value

SAMPLERS = ("tpe", "random", "grid", "gp", "cmaes")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
DIRECTIONS = ("minimize", "maximize")
ON_NAN = ("fail", "worst")
JOURNAL_FILE = "optuna_journal.log"
STORAGE_FORMS = ("use memory, journal:PATH, sqlite:///PATH or a database URL such as "
                 "postgresql://user@host/db")


@dataclass
class Settings:
    """The sweeper's config as plain Python values (see config.py for each field's meaning)."""
    study_name: str | None
    storage: str | None
    n_trials: int | None
    n_jobs: int | None
    sampler: str
    seed: int | None
    sampler_kwargs: dict
    pruner: str
    pruner_kwargs: dict
    objectives: list | None
    directions: list
    on_nan: str
    stale_after_s: float
    params: dict | None


def check_settings(s: Settings) -> None:
    """Raise SweeperError (one line: key, value, what is allowed) for the first bad field."""
    key = "hydra.sweeper."
    if s.sampler not in SAMPLERS:
        raise bad_value(key + "sampler", s.sampler, f"choose one of {', '.join(SAMPLERS)}")
    if s.pruner not in PRUNERS:
        raise bad_value(key + "pruner", s.pruner, f"choose one of {', '.join(PRUNERS)}")
    if s.on_nan not in ON_NAN:
        raise bad_value(key + "on_nan", s.on_nan, f"choose one of {', '.join(ON_NAN)}")
    if not s.directions or any(d not in DIRECTIONS for d in s.directions):
        raise bad_value(key + "directions", s.directions,
                        f"a list of {' or '.join(DIRECTIONS)}, one per objective")
    if s.objectives is not None and len(s.objectives) != len(s.directions):
        raise bad_value(key + "directions", s.directions,
                        f"give one direction per objective ({len(s.objectives)} objectives: "
                        f"{', '.join(s.objectives)})")
    if s.objectives is not None and not s.objectives:
        raise bad_value(key + "objectives", s.objectives,
                        "name at least one metrics.json key, or null for the return value")
    for name in ("n_trials", "n_jobs"):
        value = getattr(s, name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise bad_value(key + name, value, "must be an integer >= 1 (or null)")
    if s.n_trials is None and s.sampler != "grid":
        raise SweeperError(f"{key}n_trials: required with sampler={s.sampler} (the study's "
                           "total number of trials, an integer >= 1)")
    if not s.stale_after_s > 0:
        raise bad_value(key + "stale_after_s", s.stale_after_s, "must be a number of seconds > 0")
    if s.pruner != "none" and len(s.directions) > 1:
        raise bad_value(key + "pruner", s.pruner, "pruning needs a single objective (Optuna "
                        "cannot prune multi-objective studies); set hydra.sweeper.pruner=none")


def make_sampler(name: str, seed: int | None, kwargs: dict):
    """A fresh Optuna sampler; `grid` is a random sampler over trials the sweeper enqueued."""
    import optuna

    if name == "cmaes":
        _require("cmaes", "cmaes", "cmaes")
    if name == "gp":
        _require("gp", "scipy", "scipy")
    classes = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
               "grid": optuna.samplers.RandomSampler, "gp": optuna.samplers.GPSampler,
               "cmaes": optuna.samplers.CmaEsSampler}
    try:
        return classes[name](seed=seed, **kwargs)
    except (TypeError, ValueError) as e:
        raise bad_value("hydra.sweeper.sampler_kwargs", kwargs, f"{name}: {e}") from None


def _require(sampler: str, module: str, package: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise SweeperError(f"hydra.sweeper.sampler={sampler!r}: needs the {package} package, "
                           f"which is not installed (pip install {package})") from None


def make_pruner(name: str, kwargs: dict):
    import optuna

    classes = {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
               "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
               "hyperband": optuna.pruners.HyperbandPruner}
    try:
        return classes[name](**kwargs)
    except (TypeError, ValueError) as e:
        raise bad_value("hydra.sweeper.pruner_kwargs", kwargs, f"{name}: {e}") from None


def resolve_storage(storage: str | None, study_name: str | None, sweep_dir: Path) -> str:
    """The storage URL jobs and other workers can reach (absolute paths)."""
    if storage is None:
        if study_name is None:
            return "memory"
        return f"journal:{(sweep_dir / JOURNAL_FILE).resolve()}"
    if storage == "memory":
        return storage
    if storage.startswith("journal:"):
        path = storage[len("journal:"):]
        if not path:
            raise bad_value("hydra.sweeper.storage", storage, "journal:PATH needs a file path")
        url = f"journal:{Path(path).expanduser().resolve()}"
    elif storage.startswith("sqlite:///") and storage[len("sqlite:///"):] not in ("",
                                                                               ":memory:"):
        path = storage[len("sqlite:///"):]
        url = f"sqlite:///{Path(path).expanduser().resolve()}"
    else:
        return storage
    _check_folder(storage, Path(storage_file(url)).parent)
    return url


def storage_file(url: str) -> str | None:
    """The file of a journal or sqlite storage URL, else None."""
    if url.startswith("journal:"):
        return url[len("journal:"):]
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):]
    return None


def _check_folder(storage: str, folder: Path) -> None:
    """One rule for file storages (journal and sqlite): the file's folder must exist; it is
    never created (a mistyped path would otherwise grow a study in a new folder)."""
    if not folder.is_dir():
        raise bad_value("hydra.sweeper.storage", storage,
                        f"folder {folder} does not exist; create it first (the folder of a "
                        "journal or sqlite file is never created)")


# SQLAlchemy's database drivers: the module it imports -> the package that provides it
DRIVERS = {"psycopg2": "psycopg2-binary", "psycopg": "'psycopg[binary]'", "pymysql": "PyMySQL",
           "MySQLdb": "mysqlclient", "pg8000": "pg8000", "asyncpg": "asyncpg",
           "cx_Oracle": "cx_Oracle", "oracledb": "oracledb", "pyodbc": "pyodbc"}


def open_storage(url: str, stale_after_s: float | None = None):
    """An Optuna storage for a resolved URL; SweeperError when it cannot be opened.

    `stale_after_s` (the sweeper's setting; None for a job, which only reports): a database
    storage then runs Optuna's own heartbeat, `grace_period` = stale_after_s and
    `heartbeat_interval` = a tenth of it, and retries a trial that went stale (its worker
    died) with `RetryHeartbeatStaleTrialCallback` (Optuna 5's name for
    `RetryFailedTrialCallback`; _workers.py). A journal file has no heartbeat in Optuna: the
    sweeper's own claims and heartbeats serve it. Workers that open a new database at the same
    moment race to create its tables: a failed open is tried again twice, a second apart."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    for attempt in range(3):
        try:
            if url == "memory":
                return optuna.storages.InMemoryStorage()
            if url.startswith("journal:"):
                path = Path(url[len("journal:"):])
                return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
            return _rdb_storage(url, stale_after_s)
        except Exception as e:
            if missing := _missing_module(e):  # a database URL whose driver is not installed
                package = DRIVERS.get(missing.split(".")[0], missing)
                raise bad_value("hydra.sweeper.storage", display_url(url),
                                f"needs the database driver {missing}, which is not installed "
                                f"(pip install {package})") from None
            if attempt < 2 and "://" in url and _is_database_error(e):
                time.sleep(1.0)
                continue
            reason = (str(e).splitlines() or [type(e).__name__])[0]
            raise bad_value("hydra.sweeper.storage", display_url(url),
                            f"cannot open it ({reason}); {STORAGE_FORMS}") from None


def _rdb_storage(url: str, stale_after_s: float | None):
    import optuna

    if stale_after_s is None:
        return optuna.storages.RDBStorage(url)
    grace = max(1, int(round(stale_after_s)))
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=max(1, grace // 10), grace_period=grace,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback())


def _is_database_error(error: BaseException) -> bool:
    """An error the database raised (not a bad URL): worth another try."""
    from sqlalchemy.exc import DBAPIError

    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, DBAPIError) and not isinstance(error.orig, ModuleNotFoundError):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def _missing_module(error: BaseException) -> str | None:
    """The module whose absence caused `error` (Optuna wraps SQLAlchemy's ImportError)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, ModuleNotFoundError) and error.name:
            return error.name
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def display_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def lock_file(url: str, study_name: str, sweep_dir: Path) -> Path | None:
    """The file every worker of a study locks around a claim: beside a file storage (which all
    its workers share), else in the sweep folder. None for in-memory studies."""
    if url == "memory":
        return None
    if url.startswith("journal:"):
        return Path(url[len("journal:"):] + ".claim.lock")
    if url.startswith("sqlite:////"):
        return Path(url[len("sqlite:///"):] + ".claim.lock")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", study_name)
    return sweep_dir / f".{safe}.claim.lock"


def open_study(s: Settings, storage, sampler, pruner):
    """Create the study or load it (a rerun, another worker); its directions and objectives
    must match the settings."""
    import optuna

    study = optuna.create_study(study_name=s.study_name, storage=storage, sampler=sampler,
                                pruner=pruner, directions=s.directions, load_if_exists=True)
    have = [d.name.lower() for d in study.directions]
    if have != list(s.directions):
        raise bad_value("hydra.sweeper.directions", s.directions,
                        f"study {study.study_name!r} already has directions {have}; a study's "
                        "objectives cannot change (choose another study_name)")
    objectives = study.user_attrs.get("objectives", s.objectives)
    if objectives != s.objectives:
        raise bad_value("hydra.sweeper.objectives", s.objectives,
                        f"study {study.study_name!r} optimises {objectives}; a study's "
                        "objectives cannot change (choose another study_name)")
    return study
