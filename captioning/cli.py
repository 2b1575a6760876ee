"""What the entry points share: user errors end the program with their message, without a traceback."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from captioning.errors import CaptioningError

# The frozen encoder stays in eval mode on purpose; Lightning's warning about it would only alarm users.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
# The step checkpoints hold the weights after the step they count, which is what resuming at that step needs.
warnings.filterwarnings("ignore", message=r".*manual optimization and every_n_train_steps.*")
# ${subfolder:NAME} is "NAME/", or nothing for a null NAME: run folders are outputs/[<experiment>/]<date_time>.
OmegaConf.register_new_resolver("subfolder", lambda name: f"{name}/" if name else "", replace=True)


def run_entry_point(function: Callable[[DictConfig], object], cfg: DictConfig, name: str) -> None:
    """Run `function(cfg)`; a CaptioningError is logged as one paragraph and exits with status 1."""
    try:
        function(cfg)
    except Exception as error:
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, CaptioningError):
            cause = cause.__cause__  # Hydra's instantiate wraps what a constructor raises
        if cause is None:
            raise
        logging.getLogger(name).error(str(cause))
        sys.exit(1)
