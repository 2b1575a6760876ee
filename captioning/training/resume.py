"""Whether a checkpoint can be resumed by this run: the same layer sizes, and data its vocabulary knows."""

from __future__ import annotations

from captioning.errors import CheckpointError

# Hyperparameters that fix the shapes of the weights: a resumed run must keep them.
SHAPE_HYPERPARAMETERS = ("embed_dim", "hidden_dim", "attention_dim")


def check_resumable(checkpoint: dict, model_settings: dict, vocabulary_coverage: float) -> None:
    """Refuse to resume from a checkpoint whose weights cannot fit this run's model, or whose vocabulary
    (which the run adopts) misses most words of this run's training captions (`vocabulary_coverage`)."""
    saved = checkpoint.get("hyper_parameters", {})
    different = [
        f"model.{name}={saved[name]} (this run: {model_settings[name]})"
        for name in SHAPE_HYPERPARAMETERS
        if name in saved and name in model_settings and saved[name] != model_settings[name]
    ]
    if different:
        raise CheckpointError(
            f"The checkpoint was trained with {', '.join(different)}: its weights cannot be resumed by this "
            "model. Resume with the checkpoint's settings, or start a new run without ckpt_path."
        )
    if vocabulary_coverage < 0.8:
        raise CheckpointError(
            f"The checkpoint's vocabulary knows only {vocabulary_coverage:.0%} of the words of this run's "
            "training captions: it was trained on other data. Resume it on the data it was trained on, or "
            "start a new run without ckpt_path."
        )
