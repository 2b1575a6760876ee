"""A callback that records, per process, which captions it trained on, a digest of its final weights and the
document frequencies of its self-critical reward."""

import json
from pathlib import Path

import lightning as L
import torch


class RecordRankData(L.Callback):
    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.samples: list[list[float]] = []

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: dict, *args) -> None:
        # Each sample's caption as a tuple of ids identifies it (tiny data: captions differ).
        self.samples += batch["captions"].tolist()

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        weights = torch.cat([parameter.detach().flatten() for parameter in module.decoder.parameters()])
        self.directory.mkdir(parents=True, exist_ok=True)
        scorer = getattr(getattr(module, "reward", None), "scorer", None)
        record = {
            "samples": self.samples,
            # The document frequencies a self-critical reward was fitted on, if any.
            "reward_table": None if scorer is None else [scorer.document_keys.tolist(), scorer.document_idf.tolist()],
            "weights_sum": weights.double().sum().item(),
            "weights_norm": weights.double().norm().item(),
            "world_size": trainer.world_size,
        }
        (self.directory / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
