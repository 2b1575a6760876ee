"""Evaluation outputs: metrics.json, predictions.json, samples.md and a summary table."""

from __future__ import annotations

import json
from pathlib import Path


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


def metrics_table(metrics: dict) -> str:
    """The numeric entries of `metrics` as a two-column table for the terminal."""
    rows = [
        (name, "n/a" if value is None else f"{value:.4f}")
        for name, value in metrics.items()
        if value is None or isinstance(value, float)
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
