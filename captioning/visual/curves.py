"""Convergence figures from history tables (history.csv): one run's train and val loss and its val score per
epoch, and every job of a sweep side by side."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no global figure state, no window, the Agg canvas for files
from matplotlib.ticker import MaxNLocator

# A score column of history.csv -> how the figures name it.
SCORE_NAMES = {"val_bleu4": "BLEU-4", "val_cider": "CIDEr-D"}


def epoch_series(table: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """The epochs and values of `column` where it holds a number (validation may skip epochs, or never run)."""
    if column not in table.columns:
        return np.empty(0), np.empty(0)
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
    kept = np.isfinite(values)
    return table["epoch"].to_numpy(dtype=float)[kept], values[kept]


def _plot(axis, table: pd.DataFrame, column: str, label: str, **style) -> bool:
    epochs, values = epoch_series(table, column)
    if len(values):
        axis.plot(epochs, values, marker="o", markersize=3, label=label, **style)
    return bool(len(values))


def _finish(axis, title: str, ylabel: str, plotted: bool, empty: str) -> None:
    axis.set_title(title)
    axis.set_xlabel("epoch")
    axis.set_ylabel(ylabel)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    if plotted:
        axis.legend(fontsize="small")
    else:
        axis.text(0.5, 0.5, empty, ha="center", va="center", transform=axis.transAxes, color="gray")


def curves_figure(table: pd.DataFrame, score: str) -> Figure:
    """Two panels over the epochs of one run's history `table`: train and val loss; the val `score` column
    (val_bleu4, or val_cider for a self-critical run)."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axis, score_axis = figure.subplots(1, 2)
    plotted = [
        _plot(loss_axis, table, column, label) for column, label in (("train_loss", "train"), ("val_loss", "val"))
    ]
    _finish(loss_axis, "Loss", "loss", any(plotted), "no losses yet")
    name = SCORE_NAMES.get(score, score)
    scored = _plot(score_axis, table, score, f"val {name}", color="tab:green")
    _finish(score_axis, f"Validation {name}", name, scored, "no validation in this run")
    return figure


def sweep_figure(jobs: Sequence[tuple[str, pd.DataFrame, str]]) -> Figure:
    """Two panels over the epochs of every sweep job (label, history table, score column): the val loss, and
    the val score, one line per job."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    loss_axis, score_axis = figure.subplots(1, 2)
    lost = [_plot(loss_axis, table, "val_loss", label) for label, table, _ in jobs]
    _finish(loss_axis, "Validation loss", "loss", any(lost), "no job validated")
    names = " / ".join(dict.fromkeys(SCORE_NAMES.get(score, score) for _, _, score in jobs))
    scored = [_plot(score_axis, table, score, label) for label, table, score in jobs]
    _finish(score_axis, f"Validation {names}", names, any(scored), "no job validated")
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    """Write `figure` as a PNG at `path` (its folder is created, a previous file replaced); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")  # a reader never sees half a PNG
    figure.savefig(partial, dpi=100, format="png")
    partial.replace(path)
    return path
