"""What validation shows besides the loss: BLEU-4 and CIDEr-D of greedy captions, and sample captions with
attention."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from captioning.data.images import load_image
from captioning.evaluation.cider import CiderDMetric
from captioning.evaluation.metrics import bleu_4
from captioning.visual.attention import attention_figure
from captioning.vocabulary import detokenize


class ValidationCaptions(L.Callback):
    """Captions every validation image greedily, as `evaluate.py eval.split=val eval.beam_size=1` would, and
    logs their corpus BLEU-4 as `val/bleu4` and CIDEr-D as `val/cider` (so that a ModelCheckpoint can monitor
    them). On TensorBoard it also shows the first `logged_samples` captions next to their ground truth and the
    first one's attention. CIDEr-D is a torchmetrics Metric, synchronised across DDP ranks (images that the
    distributed sampler repeats to even the ranks count twice); BLEU-4 is computed on the gathered captions.
    """

    def __init__(self, bleu: bool = True, logged_samples: int = 4, cider: bool = True) -> None:
        self.bleu = bleu
        self.logged_samples = logged_samples
        self.cider = CiderDMetric() if cider else None
        self._predictions: list[dict] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._predictions = []
        if self.cider is not None:
            self.cider.reset()
            self.cider.to(module.device)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        module: L.LightningModule,
        outputs: dict,
        batch: dict,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        scored = self.bleu or self.cider is not None
        if trainer.sanity_checking or not (scored or len(self._predictions) < self.logged_samples):
            return
        captions = module.caption(outputs["features"], beam_size=1)
        for (words, attention), references, path in zip(captions, batch["references"], batch["image_paths"]):
            self._predictions.append({"image": path, "words": words, "attention": attention, "references": references})
        if self.cider is not None:
            self.cider.update([" ".join(words) for words, _ in captions], [list(refs) for refs in batch["references"]])

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self._predictions:
            return
        if self.bleu:
            predictions = _gather(trainer, self._predictions)
            score = bleu_4(
                {p["image"]: " ".join(p["words"]) for p in predictions},
                {p["image"]: list(p["references"]) for p in predictions},
            )
            module.log("val/bleu4", score, prog_bar=True, sync_dist=True)  # the same gathered figure on every rank
        if self.cider is not None:
            module.log("val/cider", float(self.cider.compute()), prog_bar=True, sync_dist=True)
        tensorboard = next((logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)), None)
        if trainer.is_global_zero and tensorboard is not None:  # logger=[csv,tensorboard] too
            self._log_samples(tensorboard, trainer.global_step)

    def _log_samples(self, logger: TensorBoardLogger, step: int) -> None:
        samples = self._predictions[: self.logged_samples]
        rows = ["| generated | ground truth |", "|---|---|"]
        rows += [f"| {detokenize(sample['words'])} | {sample['references'][0]} |" for sample in samples]
        logger.experiment.add_text("val/captions", "\n".join(rows), step)
        first = samples[0]
        figure = attention_figure(load_image(first["image"]), first["words"], first["attention"])
        logger.experiment.add_figure("val/attention", figure, step)


def _gather(trainer: L.Trainer, predictions: list[dict]) -> list[dict]:
    """Every rank's predictions, each image once (the distributed sampler repeats some to even the ranks)."""
    if trainer.world_size == 1 or not torch.distributed.is_initialized():
        return predictions
    shared = [{key: value for key, value in p.items() if key != "attention"} for p in predictions]
    gathered: list[list[dict]] = [[] for _ in range(trainer.world_size)]
    torch.distributed.all_gather_object(gathered, shared)
    return list({p["image"]: p for rank in gathered for p in rank}.values())
