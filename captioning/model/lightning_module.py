"""LightningModule: the frozen encoder and the attention decoder, trained with cross-entropy."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable

import lightning as L
import torch

from captioning.errors import CheckpointError
from captioning.model.decoder import AttentionDecoder, Generation
from captioning.model.encoder import ResNet50Encoder, encoder_identity
from captioning.vocabulary import Vocabulary

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]
# The reference schedule, for a module built without a config (the configs give the same as `_partial_` targets).
REFERENCE_OPTIMIZER: OptimizerFactory = functools.partial(torch.optim.Adam, lr=1e-3)
REFERENCE_SCHEDULER: SchedulerFactory = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=10, gamma=0.5)


class CaptioningModule(L.LightningModule):
    """Show, Attend and Tell. Checkpoints hold the decoder, the vocabulary and the encoder's name, not its
    frozen weights (rebuilt from torchvision), and contain only tensors and plain Python values.

    It computes losses and steps; sample captions, figures and files are the business of callbacks."""

    def __init__(
        self,
        encoder: ResNet50Encoder,
        vocabulary: list[str],
        embed_dim: int = 256,
        hidden_dim: int = 256,
        attention_dim: int = 256,
        dropout: float = 0.5,
        attention_reg: float = 1.0,
        max_caption_length: int = 20,
        optimizer: OptimizerFactory = REFERENCE_OPTIMIZER,
        scheduler: SchedulerFactory | None = REFERENCE_SCHEDULER,
    ) -> None:
        super().__init__()
        # The optimizer and scheduler are callables: the run's config records them, checkpoints do not.
        self.save_hyperparameters(ignore=["encoder", "optimizer", "scheduler"])
        self.encoder = encoder
        self.vocabulary = Vocabulary(vocabulary)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.decoder = AttentionDecoder(
            len(self.vocabulary),
            encoder.feature_dim,
            embed_dim,
            hidden_dim,
            attention_dim,
            dropout,
            self.vocabulary.pad_id,
            self.vocabulary.bos_id,
            self.vocabulary.eos_id,
        )

    # --- checkpoints without the frozen encoder ----------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {
            name: tensor for name, tensor in checkpoint["state_dict"].items() if not name.startswith("encoder.")
        }
        checkpoint["encoder"] = {
            "weights": self.encoder.weights,
            "random_init_seed": self.encoder.random_init_seed,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("encoder", {})
        saved_identity = encoder_identity(saved.get("weights"), saved.get("random_init_seed", 0))
        if saved_identity != self.encoder.identity:
            raise CheckpointError(
                f"The checkpoint was trained on the features of {saved_identity}, this run uses "
                f"{self.encoder.identity}: set model.encoder.weights={saved.get('weights') or 'null'} and "
                f"model.encoder.random_init_seed={saved.get('random_init_seed', 0)}."
            )
        encoder_state = {f"encoder.{name}": tensor for name, tensor in self.encoder.state_dict().items()}
        checkpoint["state_dict"] = {**checkpoint["state_dict"], **encoder_state}

    # --- forward -------------------------------------------------------------------------------------------
    def region_features(self, batch: dict) -> torch.Tensor:
        """Cached features of the batch, or the frozen encoder's features of its images."""
        if "features" in batch:
            return batch["features"]  # (B, R, D)
        with torch.no_grad():
            return self.encoder(batch["images"])  # (B, R, D)

    def caption_loss(self, features: torch.Tensor, captions: torch.Tensor) -> tuple[torch.Tensor, int, torch.Tensor]:
        """Mean cross-entropy per word of `captions` (N, T) (`<bos>` ... `<eos>`), ignoring `<pad>`; the number
        of words scored; and the doubly stochastic attention penalty, already times its lambda (0 if off)."""
        pad_id = self.vocabulary.pad_id
        inputs, targets = captions[:, :-1], captions[:, 1:]  # (N, T-1)
        inputs = inputs.masked_fill(inputs == self.vocabulary.eos_id, pad_id)  # nothing follows <eos>
        cross_entropy, words, attention = self.decoder.cross_entropy(features, inputs, targets)  # (N, T-1, R)
        penalty = torch.zeros((), device=features.device)
        if self.hparams.attention_reg > 0:
            mask = (targets != pad_id).unsqueeze(2).to(attention.dtype)  # (N, T-1, 1)
            coverage = (attention * mask).sum(dim=1)  # (N, R): total attention each region got
            penalty = self.hparams.attention_reg * ((1.0 - coverage) ** 2).mean()
        return cross_entropy, words, penalty

    def generate(self, features: torch.Tensor, beam_size: int = 1) -> Generation:
        return self.decoder.generate(features, self.hparams.max_caption_length, beam_size)

    @torch.no_grad()
    def caption(self, features: torch.Tensor, beam_size: int = 1) -> list[tuple[list[str], torch.Tensor]]:
        """Each image's generated words and their attention (words, R): the one decoding that validation,
        evaluation and caption.py report."""
        generation = self.generate(features, beam_size)
        captions = []
        for tokens, attention in zip(generation.tokens.tolist(), generation.attention.float().cpu()):
            words = self.vocabulary.words(tokens)
            captions.append((words, attention[: len(words)]))
        return captions

    # --- steps ----------------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        cross_entropy, words, penalty = self.caption_loss(self.region_features(batch), batch["captions"])
        self.log("train/loss", cross_entropy, on_step=True, on_epoch=True, prog_bar=True, batch_size=words)
        if self.hparams.attention_reg > 0:
            self.log("train/attention_penalty", penalty, on_step=False, on_epoch=True, batch_size=words)
        return cross_entropy + penalty

    def _reference_loss(self, batch: dict, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss over every reference caption of the batch's images (B, references, T)."""
        features = self.region_features(batch)  # (B, R, D)
        captions = batch["captions"]  # (B, refs, T)
        present = captions[:, :, 0] != self.vocabulary.pad_id  # (B, refs)
        image_of_caption = torch.arange(len(captions), device=captions.device).unsqueeze(1).expand_as(present)
        loss, words, _ = self.caption_loss(features[image_of_caption[present]], captions[present])
        self.log(name, loss, on_epoch=True, prog_bar=True, batch_size=words, sync_dist=True)
        return loss, features

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        _, features = self._reference_loss(batch, "val/loss")
        return {"features": features}  # for the callbacks that caption the validation images

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._reference_loss(batch, "test/loss")

    def configure_optimizers(self) -> dict:
        options = {}
        # Fused Adam(W) is the fastest, but Lightning's mixed-precision plugins refuse to clip its gradients.
        mixed_precision = self._trainer is not None and "mixed" in str(self.trainer.precision)
        chosen = getattr(self.optimizer_factory, "keywords", {})
        if "fused" in inspect.signature(self.optimizer_factory).parameters and "fused" not in chosen:
            options["fused"] = not mixed_precision
        optimizer = self.optimizer_factory(self.decoder.parameters(), **options)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
