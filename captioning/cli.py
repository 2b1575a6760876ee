"""What the entry points share: user errors end the program with their message, without a traceback, and a
run that fails leaves no empty run folder behind (see run_folders)."""

from __future__ import annotations

import logging
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from captioning.errors import CaptioningError
from captioning.run_folders import remove_if_empty, run_suffix

# The frozen encoder stays in eval mode on purpose; Lightning's warning about it would only alarm users.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
# The step checkpoints hold the weights after the step they count, which is what resuming at that step needs.
warnings.filterwarnings("ignore", message=r".*manual optimization and every_n_train_steps.*")
# ${run_suffix:}: outputs/<date_time>_<suffix>, so that two runs launched together never share a folder.
OmegaConf.register_new_resolver("run_suffix", run_suffix, use_cache=True, replace=True)
# ${subfolder:NAME} is "NAME/", or nothing for a null NAME: run folders are outputs/[<experiment>/]<date_time>.
OmegaConf.register_new_resolver("subfolder", lambda name: f"{name}/" if name else "", replace=True)


def run_entry_point(function: Callable[[DictConfig], object], cfg: DictConfig, name: str) -> None:
    """Run `function(cfg)`; a CaptioningError is logged as one paragraph and exits with status 1, removing the run
    folder if the run wrote nothing of its own in it."""
    try:
        function(cfg)
    except SIGTERMException:  # Lightning stopped the run between two steps (SaveOnInterrupt kept the last one)
        sys.exit(128 + signal.SIGTERM)  # 143: how shells and schedulers read a process ended by SIGTERM
    except Exception as error:
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, CaptioningError):
            cause = cause.__cause__  # Hydra's instantiate wraps what a constructor raises
        if cause is None:
            raise
        logging.getLogger(name).error(str(cause))
        if HydraConfig.initialized():
            remove_if_empty(Path(HydraConfig.get().runtime.output_dir))
        sys.exit(1)
