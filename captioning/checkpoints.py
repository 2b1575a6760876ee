"""Reading checkpoints safely: tensors and plain values only, never pickled code."""

from __future__ import annotations

from pathlib import Path

import torch

from captioning.data.vocabulary import Vocabulary
from captioning.errors import CheckpointError
from captioning.model.encoder import ResNet50Encoder
from captioning.model.lightning_module import CaptioningModule


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
        module = CaptioningModule(encoder, **checkpoint["hyper_parameters"])
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
    return config


# Hyperparameters that fix the shapes of the weights: a resumed run must keep them.
SHAPE_HYPERPARAMETERS = ("embed_dim", "hidden_dim", "attention_dim")


def check_resumable(checkpoint: dict, model_settings: dict, vocabulary_coverage: float) -> None:
    """Refuse to resume from a checkpoint whose weights cannot fit this run's model, or whose vocabulary
    (which the run adopts) misses most words of this run's training captions (`vocabulary_coverage`)."""
    saved = checkpoint.get("hyper_parameters", {})
    different = [
        f"model.{name}={saved[name]} (this run: {model_settings[name]})"
        for name in SHAPE_HYPERPARAMETERS
        if name in saved and name in model_settings and saved[name] != model_settings[name]
    ]
    if different:
        raise CheckpointError(
            f"The checkpoint was trained with {', '.join(different)}: its weights cannot be resumed by this "
            "model. Resume with the checkpoint's settings, or start a new run without ckpt_path."
        )
    if vocabulary_coverage < 0.8:
        raise CheckpointError(
            f"The checkpoint's vocabulary knows only {vocabulary_coverage:.0%} of the words of this run's "
            "training captions: it was trained on other data. Resume it on the data it was trained on, or "
            "start a new run without ckpt_path."
        )
