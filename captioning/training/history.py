"""Per-epoch record of the losses, the validation BLEU-4 and CIDEr-D, self-critical training's reward, and the
learning rate, written as a CSV table, with its convergence figure beside it."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pandas as pd

from captioning.visual.curves import curves_figure, save_figure

# Column of history.csv -> the logged metric it records.
COLUMNS = {"train_loss": "train/loss_epoch", "val_loss": "val/loss", "val_bleu4": "val/bleu4", "val_cider": "val/cider"}
# Columns of a self-critical run only: the samples' reward (their CIDEr-D), its baseline, the greedy captions'
# reward and the entropy of the sampled words.
SELF_CRITICAL_COLUMNS = {
    "reward": "train/reward_epoch",
    "baseline": "train/baseline",
    "greedy_reward": "train/greedy_reward",
    "entropy": "train/entropy",
}


def score_column(table: pd.DataFrame) -> str:
    """The val score that a run of this history `table` is judged by: val_cider for a self-critical run (its
    columns are there), else val_bleu4."""
    return "val_cider" if set(SELF_CRITICAL_COLUMNS) & set(table.columns) else "val_bleu4"


class LossHistory(L.Callback):
    """Appends train loss, val loss, val BLEU-4 and lr of every epoch to `path` (rewritten after each epoch),
    and redraws `curves_path` (if given): the losses and the val score (score_column) per epoch."""

    def __init__(self, path: str, curves_path: str | None = None) -> None:
        self.path = Path(path)
        self.curves_path = Path(curves_path) if curves_path else None
        self.rows: list[dict] = []

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step}
        columns = {**COLUMNS, **(SELF_CRITICAL_COLUMNS if SELF_CRITICAL_COLUMNS["baseline"] in metrics else {})}
        for column, key in columns.items():
            row[column] = float(metrics[key]) if key in metrics else float("nan")
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        table = self.table()
        table.to_csv(self.path, index=False)
        if self.curves_path is not None:
            save_figure(curves_figure(table, score_column(table)), self.curves_path)

    def table(self) -> pd.DataFrame:
        extra = [column for column in SELF_CRITICAL_COLUMNS if any(column in row for row in self.rows)]
        return pd.DataFrame(self.rows, columns=["epoch", "step", *COLUMNS, *extra, "lr"])
