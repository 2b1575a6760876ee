"""The record of a sweep's trials: each job's overrides, status, folder and optimised value, appended to
<sweep>/trials.csv as the job ends, and the best trial logged when the sweep ends."""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger(__name__)

TRIALS_NAME = "trials.csv"
COLUMNS = ("trial", "value", "status", "overrides", "folder")


def _direction(config: DictConfig) -> str:
    """maximize or minimize, as the sweeper's config says (the Optuna sweeper's `direction`)."""
    direction = str(config.hydra.sweeper.get("direction", "minimize"))
    return "maximize" if "max" in direction.lower() else "minimize"


def best_trial(trials: pd.DataFrame, direction: str) -> pd.Series | None:
    """The completed trial with the best value, or None if none completed."""
    done = trials[(trials["status"] == "COMPLETED") & trials["value"].notna()]
    if done.empty:
        return None
    return done.loc[done["value"].idxmax() if direction == "maximize" else done["value"].idxmin()]


class TrialRecord(Callback):
    """A Hydra callback: one row per sweep job in <sweep>/trials.csv, whatever the launcher (rows are appended
    whole, so jobs that end together do not mix their lines)."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        completed = job_return.status == JobStatus.COMPLETED
        value = job_return.return_value if completed else None
        row = {
            "trial": config.hydra.job.num,
            "value": float(value) if isinstance(value, int | float) else math.nan,
            "status": job_return.status.name,
            "overrides": " ".join(job_return.overrides or []),
            "folder": str(Path(job_return.hydra_cfg.hydra.runtime.output_dir).resolve()),
        }
        path = Path(config.hydra.sweep.dir) / TRIALS_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", newline="") as file:
            file.write((_csv_line(COLUMNS) if file.tell() == 0 else "") + _csv_line([row[key] for key in COLUMNS]))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = (Path(config.hydra.sweep.dir) / TRIALS_NAME).resolve()
        if not path.is_file():
            return
        trials = pd.read_csv(path)
        best = best_trial(trials, _direction(config))
        if best is None:
            log.warning(f"No trial completed with a value: see {path}")
            return
        overrides = [override.split() for override in trials["overrides"].fillna("")]
        shared = set.intersection(*map(set, overrides))  # the sweep's own command line, the same in every trial
        chosen = " ".join(override for override in str(best["overrides"]).split() if override not in shared)
        log.info(
            f"Best trial of {len(trials)}: #{best['trial']}, {config.get('optimized_metric')} = {best['value']:.6g}, "
            f"with {chosen or 'the sweep command line alone'}\n  its run: {best['folder']}\n  every trial: {path}"
        )


def _csv_line(values: list | tuple) -> str:
    """`values` as one CSV line, quoted as the csv module quotes it."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()
