"""Run folders: every run gets one of its own (a unique suffix), which no other live run may write into (a
lock file), and which is removed if the run leaves nothing in it."""

from __future__ import annotations

import atexit
import functools
import logging
import os
import secrets
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from captioning.errors import ConfigError
from captioning.folders import writable_folder

LOCK_NAME = ".run.lock"


@functools.cache
def run_suffix() -> str:
    """What tells apart the runs started in the same second: six random hex digits, drawn once per process so
    that every use in a run names the same folder. The processes of one distributed run must agree on it, so
    the tasks of a Slurm step (srun) use their job, array task and step ids, and torchrun's workers its run id."""
    environ = os.environ
    job = environ.get("SLURM_ARRAY_JOB_ID") or environ.get("SLURM_JOB_ID")
    if job and "SLURM_STEP_ID" in environ:
        ids = [job, environ.get("SLURM_ARRAY_TASK_ID") if "SLURM_ARRAY_JOB_ID" in environ else None]
        return "job" + "-".join(part for part in (*ids, environ["SLURM_STEP_ID"]) if part)
    if environ.get("TORCHELASTIC_RUN_ID", "none") != "none":
        return f"run{environ['TORCHELASTIC_RUN_ID'][:12]}"
    return (f"job{job}-" if job else "") + secrets.token_hex(3)


def is_first_process() -> bool:
    """False in the other processes of a distributed run (DDP's children, other ranks and nodes): they write
    into the folder of the first one, which owns it."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def _owner(lock: Path) -> tuple[str, int] | None:
    """The host and pid written in `lock`, or None if it cannot be read."""
    try:
        host, pid = lock.read_text().split()
        return host, int(pid)
    except (OSError, ValueError):
        return None


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def lock_run_folder(folder: Path, key: str = "hydra.run.dir") -> None:
    """Make this process the owner of `folder` (a lock file holding its host and pid), or raise
    ConfigError if a live process owns it or it cannot be written (`key` moves it). A lock left by a finished
    or killed run is taken over."""
    writable_folder(folder, key)
    lock = folder / LOCK_NAME
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = _owner(lock)
            if (
                owner is None
                or owner[1] == os.getpid()
                or (owner[0] == socket.gethostname() and not _is_alive(owner[1]))
            ):
                lock.unlink(missing_ok=True)  # stale: its run is over
                continue
            host, pid = owner
            where = f"process {pid}" + ("" if host == socket.gethostname() else f" on {host}")
            raise ConfigError(
                f"{folder} is the folder of a run still in progress ({where}): a second run would overwrite "
                "its checkpoints and reports. Leave out hydra.run.dir (every run then gets a folder of its own) "
                f"or pass another one, e.g. hydra.run.dir={folder}_2. If that run is over, delete {lock}."
            ) from None
        with os.fdopen(descriptor, "w") as file:
            file.write(me)
        atexit.register(_release, lock, me)
        return
    raise ConfigError(f"Could not take the lock {lock} of the run folder {folder}: delete it and rerun.")


def _release(lock: Path, me: str) -> None:
    try:
        if lock.read_text() == me:
            lock.unlink()
    except OSError:
        pass


class RunFolderLock(Callback):
    """Hydra callback (conf/hydra/default.yaml): takes the run's (or sweep's) folder before Hydra writes in it;
    a folder owned by a live run ends this one with one paragraph and exit status 1."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._lock(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._lock(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _lock(folder: str, key: str) -> None:
        if not is_first_process():
            return
        try:
            lock_run_folder(Path(folder), key)
        except ConfigError as error:
            print(f"Error: {error}", file=sys.stderr)  # logging is not configured yet
            sys.exit(1)


def remove_if_empty(folder: Path) -> bool:
    """Delete `folder` if it holds nothing but Hydra's .hydra/, log files, the run lock and empty folders, as
    a run that failed on its arguments leaves it (TensorBoard would list it as a run); True if deleted."""
    if not folder.is_dir():
        return False
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if path.is_dir() or relative.parts[0] == ".hydra" or relative.name == LOCK_NAME:
            continue
        if len(relative.parts) == 1 and path.suffix == ".log":
            continue
        return False
    logging.shutdown()  # close the log file before its folder goes
    shutil.rmtree(folder, ignore_errors=True)
    return True
