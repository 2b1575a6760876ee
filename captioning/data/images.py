"""Loading images from disk and the transform that prepares them for the encoder."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_transform(image_size: int = 224) -> transforms.Compose:
    """Resize the whole image to a square (no crop, so no object is cut away) and normalise as ImageNet."""
    return transforms.Compose(
        [
            transforms.Resize((image_size, image_size), antialias=True),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def load_image(path: str | Path) -> Image.Image:
    """Open an image of any mode (grayscale, RGBA, CMYK, palette) as RGB."""
    with Image.open(path) as image:
        return image.convert("RGB")


class ImageFolderDataset(torch.utils.data.Dataset):
    """Transformed images of a list of files, in order, for encoding."""

    def __init__(self, paths: list[Path], transform: transforms.Compose) -> None:
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(load_image(self.paths[index]))  # (3, S, S)
