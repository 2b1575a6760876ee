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


# What reading a broken, truncated, empty or absurdly large image file raises.
UNREADABLE_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def load_image(path: str | Path, draft_size: tuple[int, int] = (1024, 1024)) -> Image.Image:
    """Open an image of any mode (grayscale, RGBA, CMYK, palette) as RGB. A huge JPEG is decoded at a
    reduced scale that is still at least `draft_size`, which saves time and memory before the resize."""
    with Image.open(path) as image:
        image.draft("RGB", draft_size)
        return image.convert("RGB")


class ImageFolderDataset(torch.utils.data.Dataset):
    """Transformed images of a list of files, in order, for encoding, each with whether it could be read
    (an unreadable file gives a blank image and False, so that one bad file does not stop the others)."""

    def __init__(self, paths: list[Path], transform: transforms.Compose) -> None:
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, bool]:
        try:
            return self.transform(load_image(self.paths[index])), True  # (3, S, S)
        except UNREADABLE_IMAGE_ERRORS:
            return self.transform(Image.new("RGB", (8, 8))), False
