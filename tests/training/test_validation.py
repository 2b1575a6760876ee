"""Validation BLEU-4 every epoch: the same figure as evaluate.py's, and a metric best.ckpt can be kept by."""

import pandas as pd
import pytest
import torch

from evaluate import evaluate
from tests.helpers.layouts import memorisable_dataset
from tests.helpers.runs import compose_evaluate, compose_flickr
from train import train

pytestmark = pytest.mark.slow  # trains, evaluates or starts processes

# Validation images the model can learn by heart, so that BLEU-4 moves well away from 0 within a few epochs.
LEARNING = [
    "model.optimizer.lr=0.02",
    "model.hidden_dim=32",
    "model.embed_dim=32",
    "model.dropout=0",
    "data.batch_size=8",
    "trainer.max_epochs=6",
    "~logger",
]


def compose_memorising_run(tmp_path, *overrides: str):
    root = memorisable_dataset(tmp_path / "memorisable", tmp_path / "source", eval_split="val", copies=10)
    return compose_flickr(tmp_path, root, *LEARNING, *overrides)


def test_validation_bleu4_equals_the_bleu4_of_evaluate_py_on_the_same_checkpoint(tmp_path):
    result = train(compose_memorising_run(tmp_path))
    history = pd.read_csv(result["history"])
    assert len(history) == 6 and history["val_bleu4"].notna().all()

    evaluation = evaluate(
        compose_evaluate(tmp_path, f"ckpt={result['last_checkpoint']}", "eval.split=val", "eval.beam_size=1", "~logger")
    )
    bleu4 = evaluation["metrics"]["bleu_4"]
    assert bleu4 > 0.2  # a figure that can differ, not two zeros
    assert history["val_bleu4"].iloc[-1] == pytest.approx(bleu4, rel=1e-6)


def test_best_checkpoint_kept_by_validation_bleu4(tmp_path):
    monitor = ["callbacks.model_checkpoint.monitor=val/bleu4", "callbacks.model_checkpoint.mode=max"]
    result = train(compose_memorising_run(tmp_path, *monitor))
    history = pd.read_csv(result["history"])
    best = torch.load(result["best_checkpoint"], weights_only=True)
    best_epoch = int(history["val_bleu4"].idxmax())  # the first epoch of the highest BLEU-4
    assert best["epoch"] == best_epoch and best["global_step"] == history["step"].iloc[best_epoch]
    assert result["best_by"] == "val/bleu4 (max)"
