"""Reading checkpoints safely: tensors and plain values only, never pickled code."""

from __future__ import annotations

from pathlib import Path

import torch

from captioning.data.vocabulary import Vocabulary
from captioning.errors import CheckpointError


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint with `weights_only=True`; any problem becomes a CheckpointError that says what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"Checkpoint {path} does not exist: pass the path of a .ckpt file of a run "
            "(outputs/<run>/checkpoints/last.ckpt or best.ckpt)."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated files, foreign formats and pickled objects all end here
        raise CheckpointError(
            f"Cannot load checkpoint {path}: {str(error).splitlines()[0]}. It is corrupted, truncated or holds "
            "pickled objects, which are refused for safety; use a checkpoint written by train.py."
        ) from error


def checkpoint_vocabulary(checkpoint: dict) -> Vocabulary:
    """The vocabulary a checkpoint was trained with."""
    try:
        return Vocabulary(checkpoint["hyper_parameters"]["vocabulary"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError("The checkpoint holds no vocabulary: it was not written by train.py.") from error
