"""Each job's Weights & Biases run ends with the job: the jobs of a sweep run one after another in one process,
and Lightning's WandbLogger would otherwise log every later job into the first job's run."""

from __future__ import annotations

import sys
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class FinishWandbRun(Callback):
    """Hydra callback (conf/hydra/default.yaml): when a run or sweep job ends, its W&B run, if one was started,
    is finished (marked failed if the job failed)."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        wandb = sys.modules.get("wandb")  # imported only by a run that logs to W&B
        if wandb is not None and wandb.run is not None:
            wandb.run.finish(exit_code=0 if job_return.status is JobStatus.COMPLETED else 1)
