"""Reading checkpoints safely (tensors and plain values only, never pickled code) and rebuilding their model."""

from __future__ import annotations

import inspect
import pickle
from pathlib import Path

import torch

from captioning.errors import CheckpointError
from captioning.model.decoder import AttentionDecoder
from captioning.model.encoder import ResNetEncoder, saved_encoder_settings
from captioning.model.lightning_module import TRAIN_STEPS, CaptioningModule
from captioning.vocabulary import Vocabulary

# Data settings that earlier versions saved and that are now the model's (model.encoder.*).
_RETIRED_DATA_SETTINGS = ("encoder_weights", "encoder_random_init_seed", "image_size")


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint with `weights_only=True`; any problem becomes a CheckpointError that says what to do."""
    path = Path(path)
    if path.is_dir():
        found = sorted(str(checkpoint.relative_to(path)) for checkpoint in path.rglob("*.ckpt"))[:10]
        listed = f": its .ckpt files are {', '.join(found)}" if found else ", which holds no .ckpt file"
        raise CheckpointError(f"Checkpoint {path} is a folder{listed}. Pass the path of one of them.")
    if not path.is_file():
        raise CheckpointError(
            f"Checkpoint {path} does not exist: pass the path of a .ckpt file of a run "
            "(outputs/<run>/checkpoints/last.ckpt or best.ckpt)."
        )
    if path.stat().st_size == 0:
        raise CheckpointError(f"Checkpoint {path} is empty (0 bytes): it is corrupted or was never written.")
    with path.open("rb") as file:
        start = file.read(2)
    if start != b"PK" and start[:1] != b"\x80":  # torch.save writes a zip file; old versions a pickle
        raise CheckpointError(f"{path} is not a checkpoint: pass a .ckpt file written by train.py.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated files, foreign formats and pickled objects all end here
        # torch's own message may advise weights_only=False, which would run the pickled code: not repeated.
        reason = "it holds pickled objects" if isinstance(error, pickle.UnpicklingError) else type(error).__name__
        raise CheckpointError(
            f"Cannot load checkpoint {path} ({reason}). It is corrupted, truncated or holds "
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
        checkpoint["encoder"]["weights"]  # a checkpoint of train.py names its encoder's weights, null included
        encoder = ResNetEncoder(**saved_encoder_settings(checkpoint))
        accepted = {*inspect.signature(CaptioningModule).parameters, *inspect.signature(AttentionDecoder).parameters}
        # Settings that only training used (the optimizer's, in older checkpoints) play no part here.
        settings = {name: value for name, value in checkpoint["hyper_parameters"].items() if name in accepted}
        if settings.get("train_step") not in TRAIN_STEPS:  # `padded`, a choice of older versions
            settings["train_step"] = "auto"
        settings.pop("objective", None)  # how it was trained: a captioner needs no reward
        module = CaptioningModule(encoder, **settings)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"The checkpoint lacks or garbles {error}: it was not written by train.py.") from error
    module.add_encoder_state(checkpoint)
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
    config = {key: value for key, value in config.items() if key not in _RETIRED_DATA_SETTINGS}
    # Checkpoints written before `generated` existed: the built-in data is the one with a builder.
    config.setdefault("generated", config.get("dataset_builder") is not None)
    return config
