"""Reading checkpoints safely (tensors and plain values only, never pickled code) and rebuilding their model."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from captioning.errors import CheckpointError
from captioning.model.encoder import ResNet50Encoder
from captioning.model.lightning_module import CaptioningModule
from captioning.vocabulary import Vocabulary

# Data settings that earlier versions saved and that are now the model's (model.encoder.*).
_RETIRED_DATA_SETTINGS = ("encoder_weights", "encoder_random_init_seed")


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


def load_captioner(checkpoint: dict) -> CaptioningModule:
    """Rebuild the trained model of a checkpoint (its encoder from torchvision, by name), in eval mode."""
    try:
        encoder = ResNet50Encoder(checkpoint["encoder"]["weights"], checkpoint["encoder"]["random_init_seed"])
        accepted = inspect.signature(CaptioningModule).parameters
        # Settings that only training used (the optimizer's, in older checkpoints) play no part here.
        settings = {name: value for name, value in checkpoint["hyper_parameters"].items() if name in accepted}
        module = CaptioningModule(encoder, **settings)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"The checkpoint lacks or garbles {error}: it was not written by train.py.") from error
    module.on_load_checkpoint(checkpoint)
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"The checkpoint's weights do not fit its model: {str(error)[:300]}") from error
    return module.eval()


def checkpoint_data_config(checkpoint: dict) -> dict:
    """The data configuration the checkpoint was trained with (as saved by train.py)."""
    config = checkpoint.get("run_config", {}).get("data")
    if not config:
        raise CheckpointError("The checkpoint holds no data configuration: it was not written by train.py.")
    return {key: value for key, value in config.items() if key not in _RETIRED_DATA_SETTINGS}
