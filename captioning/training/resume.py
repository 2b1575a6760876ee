"""Whether a checkpoint can be resumed by this run: the same layer sizes, data its vocabulary knows, and
epochs or steps left to train."""

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


def _reached(count: int, limit: int | None) -> bool:
    return limit is not None and limit != -1 and count >= limit


def check_unfinished(checkpoint: dict, max_epochs: int | None, max_steps: int | None) -> None:
    """Refuse to resume a run that its checkpoint shows has already reached `max_epochs` or `max_steps` (as
    Lightning counts them): fitting would return at once, and the run would end as if it had trained."""
    epochs = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    epochs_done = epochs.get("processed", checkpoint.get("epoch", 0))
    step = checkpoint.get("global_step", 0)
    if _reached(epochs_done, max_epochs):
        raise CheckpointError(
            f"The checkpoint's run has already finished: it trained {epochs_done} epoch(s) (step {step}) and this "
            f"run stops at trainer.max_epochs={max_epochs}, so resuming would train nothing. To train longer, "
            f"resume with more epochs, e.g. trainer.max_epochs={epochs_done + 10}."
        )
    if _reached(step, max_steps):
        raise CheckpointError(
            f"The checkpoint's run has already finished: it reached step {step} and this run stops at "
            f"trainer.max_steps={max_steps}, so resuming would train nothing. To train longer, resume with more "
            f"steps, e.g. trainer.max_steps={2 * step}."
        )
