"""Evaluation outputs: metrics.json, predictions.json, samples.md, a summary table and a comparison of two."""

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


def _interval(interval: list[float] | None, signed: bool = False) -> str:
    if interval is None:
        return ""
    form = "+.4f" if signed else ".4f"
    return f"[{interval[0]:{form}}, {interval[1]:{form}}]"


def metrics_table(metrics: dict) -> str:
    """The numeric entries of `metrics` as a table for the terminal, each beside its interval where
    `metrics["intervals"]` holds one: `bleu_4  0.6834  [0.6612, 0.7050]`."""
    intervals = metrics.get("intervals", {})
    rows = [
        (name, "n/a" if value is None else f"{value:.4f}", _interval(intervals.get(name)))
        for name, value in metrics.items()
        if value is None or isinstance(value, float)
    ]
    width, value_width = max(len(name) for name, _, _ in rows), max(len(value) for _, value, _ in rows)
    return "\n".join(f"{name:<{width}}  {value:>{value_width}}  {interval}".rstrip() for name, value, interval in rows)


def comparison_rows(comparison: dict) -> list[list[str]]:
    """The rows of a comparison (as compare_evaluations returns): metric, A, B, B - A, its interval, and "*" where
    the interval leaves 0 out."""
    return [
        [
            name,
            f"{row['a']:.4f}",
            f"{row['b']:.4f}",
            f"{row['difference']:+.4f}",
            _interval(row["interval"], signed=True),
            "*" if row["excludes_zero"] else "",
        ]
        for name, row in comparison["metrics"].items()
    ]


def _header(comparison: dict) -> list[str]:
    level = comparison["bootstrap"]["level"] if comparison["bootstrap"] else None
    interval = f"{level:.0%} interval of B - A" if level is not None else "(no interval)"
    return ["metric", "A", "B", "B - A", interval, ""]


def _legend(comparison: dict) -> str:
    lines = [f"A: {comparison['a']['checkpoint']}", f"B: {comparison['b']['checkpoint']}"]
    bootstrap = comparison["bootstrap"]
    if bootstrap:
        share, images = (1 + bootstrap["level"]) / 2, comparison["num_images"]
        lines.append(
            f"* the interval leaves 0 out: B - A keeps its sign on {share:.1%} or more of {bootstrap['resamples']} "
            f"paired resamples of the {images} images (seed {bootstrap['seed']})"
        )
    return "\n".join(lines)


def comparison_table(comparison: dict) -> str:
    """A comparison (as compare_evaluations returns) as a table for the terminal, with what A and B are."""
    rows = [_header(comparison), *comparison_rows(comparison)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ["  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines) + "\n" + _legend(comparison)


def comparison_markdown(comparison: dict) -> str:
    """A comparison (as compare_evaluations returns) as a Markdown table, for comparison.md."""
    header = _header(comparison)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in comparison_rows(comparison)]
    return "\n".join(lines) + "\n\n" + _legend(comparison).replace("\n", "  \n") + "\n"
