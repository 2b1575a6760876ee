"""Frozen ResNet-50 that turns an image into a grid of region features (7x7x2048 at 224x224)."""

from __future__ import annotations

import logging

import torch
import torchvision
from torch import nn
from torchvision.models import ResNet50_Weights

from captioning.errors import EncoderWeightsUnavailableError

log = logging.getLogger(__name__)
# The seeds of the random encoders already announced in this process: a run warns of random weights once.
_warned_random_seeds: set[int] = set()


def encoder_identity(weights: str | None, random_init_seed: int = 0) -> str:
    """Names the weights: two encoders with the same identity compute the same features."""
    return f"resnet50:{weights}" if weights else f"resnet50:random(seed={random_init_seed})"


def load_resnet50(weights: str | None, random_init_seed: int = 0) -> torchvision.models.ResNet:
    """torchvision's ResNet-50 with ImageNet `weights`, or a random init fixed by `random_init_seed` if None."""
    if weights is None:
        if random_init_seed not in _warned_random_seeds:  # train.py's encoder and evaluate_after's would say it twice
            _warned_random_seeds.add(random_init_seed)
            log.warning(
                "Encoder: ResNet-50 with RANDOM weights (model.encoder.weights=null); "
                "captions are learnt from random convolutional features."
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_init_seed)
            return torchvision.models.resnet50(weights=None)
    try:
        weights_enum = ResNet50_Weights[weights]
    except KeyError:
        names = ", ".join(ResNet50_Weights.__members__)
        raise EncoderWeightsUnavailableError(
            f"Unknown model.encoder.weights={weights!r}: use one of {names}, or null for random weights."
        ) from None
    try:
        state_dict = weights_enum.get_state_dict(progress=True, check_hash=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a broken download a RuntimeError
        file_name = weights_enum.url.rsplit("/", 1)[-1]
        raise EncoderWeightsUnavailableError(
            f"The ResNet-50 {weights} weights are not in the torch hub cache and could not be downloaded "
            f"({error}). Download {weights_enum.url} on a machine with network access and copy it to "
            f"{torch.hub.get_dir()}/checkpoints/{file_name}, or run with model.encoder.weights=null "
            "(a frozen, randomly initialised encoder)."
        ) from error
    model = torchvision.models.resnet50(weights=None)
    model.load_state_dict(state_dict)
    return model


class ResNet50Encoder(nn.Module):
    """ResNet-50 without its pooling and classifier; frozen and always in eval mode."""

    feature_dim = 2048

    def __init__(self, weights: str | None = "IMAGENET1K_V1", random_init_seed: int = 0) -> None:
        super().__init__()
        self.weights = weights
        self.random_init_seed = random_init_seed
        resnet = load_resnet50(weights, random_init_seed)
        self.body = nn.Sequential(*list(resnet.children())[:-2])
        self.body.requires_grad_(False)
        self.train(False)

    @property
    def identity(self) -> str:
        return encoder_identity(self.weights, self.random_init_seed)

    def train(self, mode: bool = True) -> ResNet50Encoder:
        return super().train(False)  # frozen batch-norm statistics, whatever the Trainer asks

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grid = self.body(images)  # (B, 2048, H/32, W/32)
        return grid.flatten(2).transpose(1, 2)  # (B, regions, 2048)
