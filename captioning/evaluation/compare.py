"""Is a change real? Two checkpoints evaluated on the same images, each metric's difference B - A with the interval
of a paired bootstrap: the same resamples of the images applied to both, so that what the images share (an easy
image is easy for both models) cancels out of the difference."""

from __future__ import annotations

import logging
from pathlib import Path

from captioning.errors import ConfigError
from captioning.evaluation.bootstrap import bootstrap_samples, percentile_interval
from captioning.evaluation.report import comparison_markdown, comparison_table, write_json
from captioning.evaluation.run import (
    EvaluationSettings,
    bootstrap_description,
    evaluate_checkpoint,
)
from captioning.model.checkpoint import read_checkpoint

log = logging.getLogger(__name__)


def _b_in_a_order(images_a: list[tuple[str, list[str]]], images_b: list[tuple[str, list[str]]]) -> list[int]:
    """The position in B's evaluation of each of A's images (image path, references); a ConfigError unless both
    evaluated the same images with the same references."""
    names_a, names_b = [name for name, _ in images_a], [name for name, _ in images_b]
    if names_a == names_b:
        order = list(range(len(names_b)))
    elif len(set(names_b)) == len(names_b) and sorted(names_a) == sorted(names_b):
        position = {name: index for index, name in enumerate(names_b)}
        order = [position[name] for name in names_a]
    else:
        common = len(set(names_a) & set(names_b))
        raise ConfigError(
            f"Cannot compare the two checkpoints: they were evaluated on different images ({len(names_a)} for ckpt, "
            f"{len(names_b)} for compare, {common} in common). A paired comparison needs the same split of the same "
            "dataset: give compare= a checkpoint trained on the same data, or data.root= a folder both can read."
        )
    for (name, references_a), index in zip(images_a, order):
        if sorted(references_a) != sorted(images_b[index][1]):
            raise ConfigError(
                f"Cannot compare the two checkpoints: image {name} has other reference captions in the data of "
                "compare= than in that of ckpt=. A paired comparison needs the same references: evaluate both on "
                "the same dataset (data.root=)."
            )
    return order


def compare_evaluations(a: dict, b: dict, settings: EvaluationSettings) -> dict:
    """Each metric that both evaluations (as evaluate_checkpoint returns them) give a number for: A's, B's, B - A and
    the paired-bootstrap interval of B - A, with whether it leaves 0 out."""
    order = _b_in_a_order(a["images"], b["images"])
    metrics_a, metrics_b = a["metrics"], b["metrics"]
    # The measured metrics (those with per-image statistics; not settings such as length_penalty), in A's order.
    measured = {name for statistics in [*a["statistics"], *b["statistics"]] for name in statistics.names}
    measured = [name for name in dict.fromkeys([*metrics_a, *metrics_b]) if name in measured]
    names = [
        name for name in measured if isinstance(metrics_a.get(name), float) and isinstance(metrics_b.get(name), float)
    ]
    if left_out := [name for name in measured if name not in names]:
        log.info(f"Not compared, without a value for one of the two or both: {', '.join(left_out)}")
    differences = {}
    if settings.bootstrap_resamples > 0:
        samples_a, samples_b = bootstrap_samples(
            [a["statistics"], [statistics.reordered(order) for statistics in b["statistics"]]],
            settings.bootstrap_resamples,
            settings.seed,
        )
        differences = {
            name: samples_b[name] - samples_a[name] for name in names if name in samples_a.keys() & samples_b
        }
    rows = {}
    for name in names:
        interval = percentile_interval(differences[name], settings.confidence) if name in differences else None
        rows[name] = {
            "a": metrics_a[name],
            "b": metrics_b[name],
            "difference": metrics_b[name] - metrics_a[name],
            "interval": interval,
            "excludes_zero": interval is not None and (interval[0] > 0 or interval[1] < 0),
        }
    bootstrap = {**bootstrap_description(settings), "paired": True} if settings.bootstrap_resamples > 0 else None
    return {
        "a": {"checkpoint": metrics_a["checkpoint"], "output_dir": a["output_dir"]},
        "b": {"checkpoint": metrics_b["checkpoint"], "output_dir": b["output_dir"]},
        "split": settings.split,
        "num_images": len(order),
        "bootstrap": bootstrap,
        "metrics": rows,
    }


def compare_checkpoints(
    checkpoint_a: str | Path,
    checkpoint_b: str | Path,
    output_dir: str | Path,
    settings: EvaluationSettings,
    data_overrides: dict | None = None,
) -> dict:
    """Evaluate both checkpoints as `settings` say, each on its own data (with `data_overrides`), into
    `output_dir`/A and `output_dir`/B, and write their comparison to comparison.json and comparison.md."""
    read_checkpoint(checkpoint_b)  # a missing or unreadable B, before A is evaluated (A's is read first thing)
    output_dir = Path(output_dir)
    a = evaluate_checkpoint(checkpoint_a, output_dir / "A", settings, data_overrides=data_overrides)
    b = evaluate_checkpoint(checkpoint_b, output_dir / "B", settings, data_overrides=data_overrides)
    comparison = compare_evaluations(a, b, settings)
    write_json(output_dir / "comparison.json", comparison)
    (output_dir / "comparison.md").write_text(comparison_markdown(comparison))
    log.info(
        f"Comparison on {settings.split} ({comparison['num_images']} images), B - A:\n" + comparison_table(comparison)
    )
    log.info(f"Reports: {output_dir}/comparison.json, comparison.md; each checkpoint's own in {output_dir}/A and B")
    return {"comparison": comparison, "a": a, "b": b, "output_dir": str(output_dir)}
