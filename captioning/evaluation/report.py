"""Evaluation outputs: metrics.json, predictions.json, samples.md, attention figures, a summary table."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from captioning.data.images import load_image
from captioning.visual.attention import attention_figure


def write_json(path: Path, content: dict | list) -> Path:
    path.write_text(json.dumps(content, indent=1))
    return path


def samples_markdown(predictions: list[dict], count: int) -> str:
    """A table of generated captions next to their ground truth, for the first `count` images."""
    lines = ["| image | generated | ground truth |", "|---|---|---|"]
    for prediction in predictions[:count]:
        references = "<br>".join(reference.replace("|", "/") for reference in prediction["references"])
        lines.append(f"| {prediction['image']} | {prediction['generated']} | {references} |")
    return "\n".join(lines) + "\n"


def save_attention_figure(image_path: Path, words: list[str], attention: list[list[float]], output: Path) -> Path:
    """One PNG: the image and, per word, its attention map upsampled over the image."""
    figure = attention_figure(load_image(image_path), words, torch.tensor(attention))
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=80)
    plt.close(figure)
    return output


def metrics_table(metrics: dict) -> str:
    """The numeric entries of `metrics` as a two-column table for the terminal."""
    rows = [
        (name, "n/a" if value is None else f"{value:.4f}")
        for name, value in metrics.items()
        if value is None or isinstance(value, float)
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
