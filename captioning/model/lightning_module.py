"""LightningModule: the frozen encoder and the attention decoder, trained with cross-entropy."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable

import lightning as L
import torch
import torch.nn.functional as F

from captioning.errors import CheckpointError, ConfigError
from captioning.model.cuda_graph import GraphedStep
from captioning.model.decoder import AttentionDecoder, Generation
from captioning.model.encoder import ResNet50Encoder, encoder_identity
from captioning.vocabulary import Vocabulary

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]
# The reference schedule, for a module built without a config (the configs give the same as `_partial_` targets).
REFERENCE_OPTIMIZER: OptimizerFactory = functools.partial(torch.optim.Adam, lr=1e-3)
REFERENCE_SCHEDULER: SchedulerFactory = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=10, gamma=0.5)
# How a training batch is computed: captions packed (each step runs only the captions still going), padded
# to fixed shapes, or padded and replayed from a CUDA graph; `auto` is the graph on one GPU, packed elsewhere.
TRAIN_STEPS = ("auto", "packed", "padded", "graph")
# float16 mixed precision (and its aliases): its loss scaling would need the gradients unscaled before clipping.
UNSUPPORTED_PRECISIONS = ("16-mixed", "16", 16)
FLOAT16_UNSUPPORTED = (
    "trainer.precision=16-mixed is not supported: its loss scaling would need the gradients unscaled before "
    "clipping. Use trainer.precision=bf16-mixed (as trainer=gpu does) or 32-true."
)


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
        gradient_clip_norm: float | None = 5.0,
        train_step: str = "auto",
        compile_step: bool = False,
    ) -> None:
        super().__init__()
        if train_step not in TRAIN_STEPS:
            choices = ", ".join(TRAIN_STEPS)
            raise ConfigError(f"model.train_step={train_step} is not one of {choices}: e.g. model.train_step=auto")
        # The step is written out (forward, backward, clipping, optimizer) so that a CUDA graph can hold most of it.
        self.automatic_optimization = False
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
        if compile_step:
            self.decoder.compile_step()
        # The padded paths' fixed shapes: as many rows as the largest batch so far, and one CUDA graph per shape.
        self._padded_rows = 0
        self._graphs: dict[tuple, GraphedStep] = {}

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
            return batch["features"].float()  # (B, R, D), read from the cache as float16
        with torch.no_grad():
            return self.encoder(batch["images"])  # (B, R, D)

    def caption_loss(
        self, features: torch.Tensor, captions: torch.Tensor, padded: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean cross-entropy per word of `captions` (N, T) (`<bos>` ... `<eos>`), ignoring `<pad>`; the number
        of words scored (0-d); and the doubly stochastic attention penalty, already times its lambda (0 if off).

        `padded`: fixed shapes (`AttentionDecoder.padded_cross_entropy`) for normalised `features`, where blank
        rows (all `<pad>`) may fill the batch; they count in neither term.
        """
        pad_id = self.vocabulary.pad_id
        inputs, targets = captions[:, :-1], captions[:, 1:]  # (N, T-1)
        inputs = inputs.masked_fill(inputs == self.vocabulary.eos_id, pad_id)  # nothing follows <eos>
        loss_function = self.decoder.padded_cross_entropy if padded else self.decoder.cross_entropy
        cross_entropy, words, attention = loss_function(features, inputs, targets)  # (N, T-1, R)
        penalty = torch.zeros((), device=features.device)
        if self.hparams.attention_reg > 0:
            mask = (targets != pad_id).unsqueeze(2).to(attention.dtype)  # (N, T-1, 1)
            coverage = (attention * mask).sum(dim=1)  # (N, R): total attention each region got
            captioned = mask[:, 0]  # (N, 1): 0 for a blank row
            squares = ((1.0 - coverage) ** 2 * captioned).sum()
            penalty = self.hparams.attention_reg * squares / (captioned.sum() * coverage.size(1)).clamp(min=1)
        return cross_entropy, words, penalty

    def generate(self, features: torch.Tensor, beam_size: int = 1, length_penalty: float = 0.0) -> Generation:
        return self.decoder.generate(features, self.hparams.max_caption_length, beam_size, length_penalty)

    @torch.no_grad()
    def caption(
        self, features: torch.Tensor, beam_size: int = 1, length_penalty: float = 0.0
    ) -> list[tuple[list[str], torch.Tensor]]:
        """Each image's generated words and their attention (words, R): the one decoding that validation,
        evaluation and caption.py report. Beam search ranks by log-probability / length ** `length_penalty`."""
        generation = self.generate(features, beam_size, length_penalty)
        captions = []
        for tokens, attention in zip(generation.tokens.tolist(), generation.attention.float().cpu()):
            words = self.vocabulary.words(tokens)
            captions.append((words, attention[: len(words)]))
        return captions

    # --- steps ----------------------------------------------------------------------------------------------
    def _train_step_kind(self, features: torch.Tensor) -> str:
        kind = self.hparams.get("train_step", "auto")
        if kind == "auto":
            one_device = self._trainer is None or self.trainer.world_size == 1
            return "graph" if features.is_cuda and one_device else "packed"
        if kind == "graph" and not features.is_cuda:
            raise ConfigError("model.train_step=graph needs a CUDA device: use model.train_step=auto on this machine.")
        return kind

    def learn(
        self, features: torch.Tensor, captions: torch.Tensor, padded: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward, backward and gradient clipping of one batch: the part of a step a CUDA graph can hold.
        Returns the cross-entropy, the number of words and the penalty, detached."""
        cross_entropy, words, penalty = self.caption_loss(features, captions, padded)
        loss = cross_entropy + penalty
        if self._trainer is not None:
            self.manual_backward(loss)
        else:  # a module driven by hand (the benchmarks, the tests)
            loss.backward()
        if self.hparams.get("gradient_clip_norm"):
            torch.nn.utils.clip_grad_norm_(self.decoder.parameters(), self.hparams.gradient_clip_norm)
        return cross_entropy.detach(), words, penalty.detach()

    def compute_gradients(
        self, features: torch.Tensor, captions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`learn` on a batch of features (B, R, D) and captions (B, T) by the configured path, leaving the
        gradients in `.grad` for the optimizer. The padded paths pad to `max_caption_length` words and to the
        number of captions of the first batch, so that the last, partial batch keeps the same shapes."""
        kind = self._train_step_kind(features)
        if kind == "packed":
            self.decoder.zero_grad(set_to_none=True)
            return self.learn(features, captions, padded=False)
        rows, length = len(captions), self.hparams.max_caption_length + 2  # <bos> words <eos>
        if captions.size(1) > length:
            raise ValueError(f"Captions of {captions.size(1)} tokens exceed max_caption_length + 2 = {length}")
        self._padded_rows = max(self._padded_rows, rows)
        blank_rows = self._padded_rows - rows
        # Normalised before the blank rows join, so that they do not count in the normalisation's statistics.
        features = F.pad(self.decoder.normalise(features), (0, 0, 0, 0, 0, blank_rows))
        captions = F.pad(captions, (0, length - captions.size(1), 0, blank_rows), value=self.vocabulary.pad_id)
        if kind == "padded":
            self.decoder.zero_grad(set_to_none=True)
            return self.learn(features, captions, padded=True)
        key = (tuple(features.shape), features.dtype, torch.is_autocast_enabled("cuda"))
        if key not in self._graphs:
            self._graphs[key] = GraphedStep(functools.partial(self.learn, padded=True), self.decoder.parameters())
        return self._graphs[key](features, captions)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        optimizer = self.optimizers()
        features = self.region_features(batch)
        cross_entropy, _, penalty = self.compute_gradients(features, batch["captions"])
        optimizer.step()
        # Weighted by captions, not words: the word count would cost a wait for the GPU at every step.
        captions = len(batch["captions"])
        self.log("train/loss", cross_entropy, on_step=True, on_epoch=True, prog_bar=True, batch_size=captions)
        if self.hparams.attention_reg > 0:
            self.log("train/attention_penalty", penalty, on_step=False, on_epoch=True, batch_size=captions)
        return cross_entropy + penalty

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        # Once per epoch: a run resumed from this epoch's end (the checkpoint is written after this hook) must
        # not step it again.
        if scheduler is not None and scheduler.last_epoch <= self.current_epoch:
            scheduler.step()

    def _reference_loss(self, batch: dict, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss over every reference caption of the batch's images (B, references, T)."""
        features = self.region_features(batch)  # (B, R, D)
        captions = batch["captions"]  # (B, refs, T)
        present = captions[:, :, 0] != self.vocabulary.pad_id  # (B, refs)
        image_of_caption = torch.arange(len(captions), device=captions.device).unsqueeze(1).expand_as(present)
        loss, words, _ = self.caption_loss(features[image_of_caption[present]], captions[present])
        self.log(name, loss, on_epoch=True, prog_bar=True, batch_size=int(words), sync_dist=True)
        return loss, features

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        _, features = self._reference_loss(batch, "val/loss")
        return {"features": features}  # for the callbacks that caption the validation images

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._reference_loss(batch, "test/loss")

    def configure_optimizers(self) -> dict:
        options = {}
        if self._trainer is not None and str(self.trainer.precision) in UNSUPPORTED_PRECISIONS:
            raise ConfigError(FLOAT16_UNSUPPORTED)
        chosen = getattr(self.optimizer_factory, "keywords", {})
        if "fused" in inspect.signature(self.optimizer_factory).parameters and "fused" not in chosen:
            options["fused"] = True  # one kernel per step for all the weights
        optimizer = self.optimizer_factory(self.decoder.parameters(), **options)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
