"""Attention figures: the image and, for every generated word, where the decoder looked."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are written to files and TensorBoard, never shown on a screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402


def upsample_attention(weights: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Smoothly upsample one step's attention over a square grid of regions (R,) to an image (H, W)."""
    side = math.isqrt(weights.numel())
    grid = weights.reshape(1, 1, side, side).float()  # (1, 1, 7, 7)
    upsampled = F.interpolate(grid, size=size, mode="bicubic", align_corners=False)  # (1, 1, H, W)
    return upsampled[0, 0].clamp_min(0).numpy()


def attention_figure(image: Image.Image, words: list[str], attention: torch.Tensor, columns: int = 5) -> plt.Figure:
    """The image, then one panel per word with its attention map (`attention` (words, R)) over the image, all
    on one colour scale. The photo keeps its aspect ratio: the model saw it stretched to a square, so its
    square grid of regions is stretched back over the photo the same way."""
    image = ImageOps.contain(image.convert("RGB"), (224, 224))  # the longer side 224 pixels
    panels = len(words) + 1
    rows = math.ceil(panels / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    axes.flat[0].imshow(image)
    axes.flat[0].set_title("image")
    maps = [upsample_attention(weights, image.size[::-1]) for weights in attention]
    # One colour scale for every word (0 to the figure's strongest weight): panels compare, and a flat map looks flat.
    highest = max((float(upsampled.max()) for upsampled in maps), default=1.0)
    for axis, word, upsampled in zip(axes.flat[1:], words, maps):
        axis.imshow(image)
        axis.imshow(upsampled, cmap="jet", alpha=0.5, vmin=0.0, vmax=highest)
        axis.set_title(word)
    figure.tight_layout()
    return figure


def save_attention_figure(image: Image.Image, words: list[str], attention: torch.Tensor, output: Path) -> Path:
    """Write `attention_figure` as a PNG at `output` (its folder is created); returns `output`."""
    figure = attention_figure(image, words, attention)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=80)
    plt.close(figure)
    return output
