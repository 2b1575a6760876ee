"""Loading images from disk and the transform that prepares them for the encoder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision import transforms

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# How `load_image` reads a file, part of the feature cache's key: a change of it changes every image's features.
IMAGE_LOADING = "upright by EXIF orientation; 16-bit, 32-bit and float scaled to 8 bits"


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
    """Open an image of any mode (grayscale, RGBA, CMYK, palette, 16-bit) as RGB, upright as a viewer shows it
    (a phone's portrait photo is stored on its side with an EXIF Orientation tag). A huge JPEG is decoded at a
    reduced scale that is still at least `draft_size`, which saves time and memory before the resize."""
    with Image.open(path) as image:
        image.draft("RGB", draft_size)
        ImageOps.exif_transpose(image, in_place=True)
        return to_8_bits(image).convert("RGB")


def to_8_bits(image: Image.Image) -> Image.Image:
    """A grayscale image of more than 8 bits (modes I;16, I, F) scaled to 8 bits, as `convert` would clip it at
    255 (a 16-bit image would turn white). Integers are scaled by the smallest even bit depth that holds their
    largest value (sensors record 10, 12, 14 or 16 bits, so a 12-bit image stored in 16 bits is not dark);
    floats by [0, 1] when they lie in it, else by their own range. Other modes are returned as they are."""
    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return image
    values = np.nan_to_num(np.asarray(image, dtype=np.float64))  # (H, W)
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if image.mode != "F":
        low, high = 0.0, 2.0 ** max(8, 2 * math.ceil(int(high).bit_length() / 2)) - 1
    elif low >= 0.0 and high <= 1.0:
        low, high = 0.0, 1.0
    scaled = (values - low) * (255.0 / max(high - low, 1e-12))
    return Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8))  # mode L


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
