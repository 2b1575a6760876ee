"""A run stopped by SIGTERM (docker stop, SLURM before preemption, systemd) or Ctrl-C keeps the step it reached."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class SaveOnInterrupt(L.Callback):
    """On SIGTERM or Ctrl-C during training, writes `<dirpath>/last.ckpt` at the step reached and says how to
    resume. Lightning notices SIGTERM between two steps and stops there; the entry point then exits with 143."""

    def __init__(self, dirpath: str | Path, filename: str = "last") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)) or trainer.sanity_checking:
            return
        if trainer.fast_dev_run or trainer.global_step == 0:
            return
        trainer.save_checkpoint(self.path)
        cause = "SIGTERM" if isinstance(exception, SIGTERMException) else "Ctrl-C (SIGINT)"
        log.warning(
            f"Stopped by {cause} at step {trainer.global_step} (epoch {trainer.current_epoch + 1}): saved "
            f"{self.path}. To go on, run the same command with ckpt_path={self.path}"
        )
