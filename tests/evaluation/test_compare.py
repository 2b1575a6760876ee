"""evaluate.py ckpt=A compare=B on the tiny run's checkpoint and a perturbed copy of it."""

import json
import logging
from pathlib import Path

import pytest
import torch

from evaluate import evaluate
from tests.helpers.runs import compose_evaluate

pytestmark = pytest.mark.slow  # evaluates two checkpoints


def perturbed_copy(checkpoint: Path, path: Path) -> Path:
    """The checkpoint with noise added to every weight and bias of its model: another model."""
    content = torch.load(checkpoint, weights_only=True)
    generator = torch.Generator().manual_seed(0)
    for name, weight in content["state_dict"].items():
        if name.endswith((".weight", ".bias")):  # not the running statistics of a normalisation
            content["state_dict"][name] = weight + 0.3 * torch.randn(weight.shape, generator=generator)
    torch.save(content, path)
    return path


def test_compare_evaluates_both_on_the_same_images_and_reports_b_minus_a_with_paired_intervals(
    tiny_run, tmp_path, caplog
):
    a = Path(tiny_run["last_checkpoint"])
    b = perturbed_copy(a, tmp_path / "perturbed.ckpt")
    with caplog.at_level(logging.INFO):
        result = evaluate(compose_evaluate(tmp_path, f"ckpt={a}", f"compare={b}", "eval.num_figures=0"))
    out = tmp_path / "eval"
    metrics = {side: json.loads((out / side / "metrics.json").read_text()) for side in ("A", "B")}
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison == result["comparison"]
    assert metrics["A"]["checkpoint"] == str(a.resolve()) and metrics["B"]["checkpoint"] == str(b.resolve())
    assert comparison["num_images"] == metrics["A"]["num_images"] == metrics["B"]["num_images"] == 2
    assert comparison["bootstrap"] == {**metrics["A"]["bootstrap"], "paired": True}
    assert metrics["A"]["bootstrap"] == {
        "resamples": 1000,
        "seed": 0,
        "level": 0.95,
        "unit": "image",
        "interval": "percentile",
    }

    compared = comparison["metrics"]
    assert {"test_loss", "test_loss_full", "bleu_4", "cider", "rouge_l", "mean_length"} <= compared.keys()
    assert "length_penalty" not in compared and "attention_entropy_uniform" not in compared  # settings, constants
    for name, row in compared.items():
        assert row["a"] == metrics["A"][name] and row["b"] == metrics["B"][name], name
        assert row["difference"] == pytest.approx(metrics["B"][name] - metrics["A"][name], abs=1e-12), name
    # The perturbed model is another model: its losses differ, and with the same images resampled alike the
    # interval of the difference excludes 0 exactly when it lies on one side of 0.
    loss = compared["test_loss_full"]
    assert loss["difference"] != 0 and loss["interval"][0] <= loss["interval"][1]
    assert loss["excludes_zero"] == (loss["interval"][0] > 0 or loss["interval"][1] < 0)

    # Each side's own reports: intervals beside the metrics, per-image scores beside the captions.
    for side in ("A", "B"):
        intervals = metrics[side]["intervals"]
        for name in ("bleu_4", "cider", "test_loss", "attention_peak"):
            low, high = intervals[name]
            assert low <= metrics[side][name] + 1e-12 and metrics[side][name] <= high + 1e-12, (side, name)
        predictions = json.loads((out / side / "predictions.json").read_text())
        scores = [prediction["scores"] for prediction in predictions]
        assert all({"bleu_4", "cider", "rouge_l", "meteor"} <= image.keys() for image in scores)
        assert metrics[side]["cider"] == pytest.approx(sum(image["cider"] for image in scores) / len(scores))
    assert (out / "comparison.md").read_text().startswith("| metric | A | B | B - A | 95% interval of B - A |")
    assert "Comparison on test (2 images), B - A:" in caplog.text and "bleu_4" in caplog.text
