"""The figure of a whole sweep: when its last job ends, <sweep>/curves.png holds every job's validation curves,
each labelled by the overrides that set it apart from the other jobs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from captioning.sweep_names import describing_overrides, job_label
from captioning.training.history import score_column
from captioning.visual.curves import save_figure, sweep_figure

log = logging.getLogger(__name__)


def sweep_jobs(sweep_dir: Path) -> list[tuple[int, list[str], Path]]:
    """(job number, overrides, folder) of every job folder in `sweep_dir` (those holding Hydra's .hydra/hydra.yaml),
    in job order."""
    jobs = []
    for hydra_file in sweep_dir.glob("*/.hydra/hydra.yaml"):
        job = OmegaConf.load(hydra_file).hydra
        overrides = OmegaConf.to_container(job.overrides.task, resolve=False)  # as typed: ${...} unresolved
        jobs.append((int(job.job.num), [str(override) for override in overrides], hydra_file.parents[1]))
    return sorted(jobs)


def distinct_labels(overrides: list[list[str]], exclude_keys: list[str]) -> list[str]:
    """One legend label per job of `overrides`: the overrides whose value is not the same in every job (all of
    them when no job differs), the keys that do not describe a run (`exclude_keys`) left out."""
    described = [describing_overrides(job, exclude_keys) for job in overrides]
    common = set.intersection(*(set(job) for job in described)) if len(described) > 1 else set()
    return [job_label([item for item in job if item not in common] or job) for job in described]


def write_sweep_curves(sweep_dir: Path, exclude_keys: list[str]) -> Path | None:
    """Write <sweep_dir>/curves.png from the history.csv of every job of `sweep_dir`; a job without one is
    named in a warning and left out. Returns the figure's path, or None if no job wrote a history."""
    jobs = sweep_jobs(sweep_dir)
    labels = distinct_labels([overrides for _, overrides, _ in jobs], exclude_keys) if jobs else []
    curves = []
    for (number, _, folder), label in zip(jobs, labels):
        history = folder / "history.csv"
        if not history.is_file():
            log.warning(f"Sweep job {number} wrote no {history}: left out of the sweep's curves")
            continue
        table = pd.read_csv(history)
        curves.append((f"{number}: {label}" if label else str(number), table, score_column(table)))
    if not curves:
        log.warning(f"No job of the sweep {sweep_dir} wrote a history.csv: no sweep curves")
        return None
    return save_figure(sweep_figure(curves), sweep_dir / "curves.png")


class SweepCurves(Callback):
    """Hydra callback (conf/hydra/default.yaml): the sweep's curves.png when a multirun ends. A figure that cannot
    be drawn is a warning, never a failed sweep: every job has already run and written its results."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        exclude_keys = list(config.hydra.job.config.override_dirname.exclude_keys)
        try:
            written = write_sweep_curves(sweep_dir, exclude_keys)
        except Exception as error:  # the figure is a summary of results that are all on disk already
            log.warning(f"Could not draw the curves of the sweep {sweep_dir}: {type(error).__name__}: {error}")
            return
        if written is not None:
            log.info(f"Sweep curves: {written}")
