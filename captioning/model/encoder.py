"""Frozen ResNet (50, 101 or 152) that turns an image into a grid of region features, e.g. 7x7x2048 at 224x224.

The grid is pooled to `grid` x `grid` regions by adaptive average pooling, as the well-known tutorial does
(14x14 from its 256-pixel images), whatever the image size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torchvision
from torch import nn
from torchvision.models import ResNet50_Weights, ResNet101_Weights, ResNet152_Weights
from torchvision.models._api import WeightsEnum

from captioning.errors import ConfigError, EncoderWeightsUnavailableError

log = logging.getLogger(__name__)

# model.encoder.arch: torchvision's builder and ImageNet weights enum of each ResNet.
ARCHITECTURES: dict[str, tuple[Callable[..., torchvision.models.ResNet], type[WeightsEnum]]] = {
    "resnet50": (torchvision.models.resnet50, ResNet50_Weights),
    "resnet101": (torchvision.models.resnet101, ResNet101_Weights),
    "resnet152": (torchvision.models.resnet152, ResNet152_Weights),
}
GRIDS = (7, 14)  # model.encoder.grid: the paper's 7x7 (ResNet at 224 px) and the tutorial's 14x14 regions
# The seeds of the random encoders already announced in this process: a run warns of random weights once.
_warned_random_seeds: set[tuple[str, int]] = set()


def native_grid(image_size: int) -> int:
    """The side of a ResNet's last feature map for a square image: each of its five stride-2 stages rounds up."""
    return -(-image_size // 32)


def encoder_identity(
    weights: str | None, random_init_seed: int = 0, arch: str = "resnet50", grid: int = 7, image_size: int = 224
) -> str:
    """Names the weights and the pooling: two encoders with the same identity compute the same features (the
    image size is in the feature cache's key through the transform). The pooling is named only where it changes
    the ResNet's own grid, so that `resnet50:IMAGENET1K_V1` at 224 px keeps the name (and caches) it always had."""
    identity = f"{arch}:{weights}" if weights else f"{arch}:random(seed={random_init_seed})"
    return identity if grid == native_grid(image_size) else f"{identity}:grid={grid}x{grid}"


def saved_encoder_settings(checkpoint: dict) -> dict:
    """The encoder settings a checkpoint saved (`weights`, `random_init_seed`, `arch`, `grid`, `image_size`);
    a checkpoint from before arch, grid and image_size were saved had a ResNet-50 at its run's data.image_size
    (224 by default), unpooled."""
    saved = checkpoint.get("encoder", {})
    image_size = saved.get("image_size", checkpoint.get("run_config", {}).get("data", {}).get("image_size", 224))
    return {
        "weights": saved.get("weights"),
        "random_init_seed": saved.get("random_init_seed", 0),
        "arch": saved.get("arch", "resnet50"),
        "grid": saved.get("grid", native_grid(image_size)),
        "image_size": image_size,
    }


def load_resnet(arch: str, weights: str | None, random_init_seed: int = 0) -> torchvision.models.ResNet:
    """torchvision's ResNet `arch` with ImageNet `weights`, or a random init fixed by `random_init_seed` if None."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"Unknown model.encoder.arch={arch!r}: use one of {', '.join(ARCHITECTURES)}.")
    build, weights_enums = ARCHITECTURES[arch]
    name = f"ResNet-{arch.removeprefix('resnet')}"
    if weights is None:
        if (arch, random_init_seed) not in _warned_random_seeds:  # train.py's encoder and evaluate_after's
            _warned_random_seeds.add((arch, random_init_seed))
            log.warning(
                f"Encoder: {name} with RANDOM weights (model.encoder.weights=null); "
                "captions are learnt from random convolutional features."
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_init_seed)
            return build(weights=None)
    try:
        weights_enum = weights_enums[weights]
    except KeyError:
        names = ", ".join(weights_enums.__members__)
        raise EncoderWeightsUnavailableError(
            f"Unknown model.encoder.weights={weights!r} for model.encoder.arch={arch}: use one of {names}, "
            "or null for random weights."
        ) from None
    try:
        state_dict = weights_enum.get_state_dict(progress=True, check_hash=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a broken download a RuntimeError
        file_name = weights_enum.url.rsplit("/", 1)[-1]
        raise EncoderWeightsUnavailableError(
            f"The {name} {weights} weights are not in the torch hub cache and could not be downloaded "
            f"({error}). Download {weights_enum.url} on a machine with network access and copy it to "
            f"{torch.hub.get_dir()}/checkpoints/{file_name}, or run with model.encoder.weights=null "
            "(a frozen, randomly initialised encoder)."
        ) from error
    model = build(weights=None)
    model.load_state_dict(state_dict)
    return model


class ResNetEncoder(nn.Module):
    """A ResNet without its pooling and classifier, its last feature map pooled to `grid` x `grid` regions;
    frozen and always in eval mode. It takes images resized to `image_size` squares: the data's transforms
    follow it."""

    feature_dim = 2048  # the channels of ResNet-50, -101 and -152's last stage

    def __init__(
        self,
        weights: str | None = "IMAGENET1K_V1",
        random_init_seed: int = 0,
        arch: str = "resnet50",
        grid: int = 7,
        image_size: int = 224,
    ) -> None:
        super().__init__()
        self.weights = weights
        self.random_init_seed = random_init_seed
        self.arch = arch
        self.grid = grid
        self.image_size = image_size
        resnet = load_resnet(arch, weights, random_init_seed)
        self.body = nn.Sequential(*list(resnet.children())[:-2])
        self.body.requires_grad_(False)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.train(False)

    @property
    def identity(self) -> str:
        return encoder_identity(self.weights, self.random_init_seed, self.arch, self.grid, self.image_size)

    @property
    def regions(self) -> int:
        """Regions per image: the rows of its features."""
        return self.grid * self.grid

    @property
    def settings(self) -> dict:
        """What rebuilds this encoder (a checkpoint saves it): plain values only."""
        return {
            "weights": self.weights,
            "random_init_seed": self.random_init_seed,
            "arch": self.arch,
            "grid": self.grid,
            "image_size": self.image_size,
        }

    def train(self, mode: bool = True) -> ResNetEncoder:
        return super().train(False)  # frozen batch-norm statistics, whatever the Trainer asks

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feature_map = self.body(images)  # (B, 2048, S/32, S/32)
        pooled = self.pool(feature_map)  # (B, 2048, grid, grid)
        return pooled.flatten(2).transpose(1, 2)  # (B, grid*grid, 2048)


ResNet50Encoder = ResNetEncoder  # the name of earlier versions, which old run configs' _target_ still give
