"""Keeps the run's resolved configuration inside every checkpoint, so that it can be evaluated alone."""

from __future__ import annotations

import lightning as L


class RunConfigInCheckpoint(L.Callback):
    """Stores `config` (plain dicts and values, loadable with weights_only=True) as checkpoint["run_config"]."""

    def __init__(self, config: dict) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["run_config"] = self.config
