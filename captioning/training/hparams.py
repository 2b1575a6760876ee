"""A run's hyper-parameters beside its metrics, for TensorBoard's HPARAMS tab (the runs of a sweep in one
table) and the parameter tables of the other loggers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard.summary import hparams as hparams_summaries

BEST_VAL_LOSS = "val/loss_best"


def flat_hyperparameters(values: Mapping[str, Any], prefix: str = "") -> dict[str, int | float | str | bool]:
    """`values` (nested) as one level of dotted names (`model.hidden_dim`) holding numbers, booleans or strings:
    None reads "null", a list its text."""
    if isinstance(values, DictConfig):
        values = OmegaConf.to_container(values, resolve=True)
    flat: dict[str, int | float | str | bool] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_hyperparameters(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = "null" if value is None else str(value)
    return flat


class HyperparameterSummary(L.Callback):
    """When training starts: the flattened `hyperparameters` go to every logger, and to TensorBoard as the
    run's HPARAMS session, whose columns are the `metrics` (scalar tags; the tab shows each one's last value).
    After every validation the lowest val/loss so far is logged as val/loss_best. When training ends the
    session is marked finished; a run that stops early keeps its metrics so far, without that mark."""

    def __init__(self, hyperparameters: Mapping[str, Any], metrics: Sequence[str] = (BEST_VAL_LOSS,)) -> None:
        self.hyperparameters = flat_hyperparameters(hyperparameters)
        self.metrics = list(metrics)
        self.best_val_loss = math.inf

    def _summaries(self) -> tuple:
        """TensorBoard's experiment (the columns), session start (this run's values) and end (finished)."""
        return hparams_summaries(self.hyperparameters, dict.fromkeys(self.metrics, 0.0))  # the values go unused

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        experiment, session_start, _ = self._summaries()
        for logger in trainer.loggers:
            if not isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(self.hyperparameters)
            elif trainer.is_global_zero:
                writer = logger.experiment._get_file_writer()  # as TensorBoardLogger.log_hyperparams writes them
                writer.add_summary(experiment, trainer.global_step)
                writer.add_summary(session_start, trainer.global_step)

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        loss = trainer.callback_metrics.get("val/loss")
        if trainer.sanity_checking or loss is None:
            return
        self.best_val_loss = min(self.best_val_loss, float(loss))
        for logger in trainer.loggers:
            logger.log_metrics({BEST_VAL_LOSS: self.best_val_loss}, step=trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger) and trainer.is_global_zero:
                logger.experiment._get_file_writer().add_summary(self._summaries()[2], trainer.global_step)

    def state_dict(self) -> dict[str, float]:
        return {"best_val_loss": self.best_val_loss}  # a resumed run goes on from its best so far

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.best_val_loss = state_dict.get("best_val_loss", math.inf)
