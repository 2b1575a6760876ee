"""LightningModule: the frozen encoder and the attention decoder, trained by one of the objectives (cross-entropy
with the attention penalty, or self-critical on a reward such as CIDEr-D)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import lightning as L
import torch
import torch.nn.functional as F

from captioning.errors import CheckpointError, ConfigError
from captioning.model import objectives, teacher_forcing
from captioning.model.decoder import AttentionDecoder, Generation
from captioning.model.encoder import ResNetEncoder, encoder_identity, saved_encoder_settings
from captioning.model.teacher_forcing import TRAIN_STEPS, TrainingPath
from captioning.vocabulary import Vocabulary

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]
# The reference schedule, for a module built without a config (the configs give the same as `_partial_` targets).
REFERENCE_OPTIMIZER: OptimizerFactory = functools.partial(torch.optim.Adam, lr=1e-3)
REFERENCE_SCHEDULER: SchedulerFactory = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=10, gamma=0.5)
# float16 mixed precision (and its aliases): its loss scaling would need the gradients unscaled before clipping.
UNSUPPORTED_PRECISIONS = ("16-mixed", "16", 16)
FLOAT16_UNSUPPORTED = (
    "trainer.precision=16-mixed is not supported: its loss scaling would need the gradients unscaled before "
    "clipping. Use trainer.precision=bf16-mixed (as trainer=gpu does) or 32-true."
)
__all__ = ["TRAIN_STEPS", "CaptioningModule", "Reward"]


class Reward(Protocol):
    """What self-critical training maximises (captioning.evaluation.cider.CiderReward): fitted once on the
    training references, then scoring token-id captions (N, L) of images `image` (N,) against the batch's
    references (B, references, T)."""

    def fit(self, references: list[list[list[int]]], vocabulary: Vocabulary) -> None: ...

    def __call__(self, captions: torch.Tensor, image: torch.Tensor, references: torch.Tensor) -> torch.Tensor: ...


class CaptioningModule(L.LightningModule):
    """Show, Attend and Tell. Checkpoints hold the decoder, the vocabulary and the encoder's name, not its
    frozen weights (rebuilt from torchvision), and contain only tensors and plain Python values.

    It computes losses and steps; sample captions, figures and files are the business of callbacks. The
    decoder's sizes (`embed_dim`, `hidden_dim`, `attention_dim`, `dropout`) are `AttentionDecoder`'s arguments.
    """

    def __init__(
        self,
        encoder: ResNetEncoder,
        vocabulary: list[str],
        attention_reg: float = 0.0,
        attention_target: str = "one",
        max_caption_length: int = 20,
        optimizer: OptimizerFactory = REFERENCE_OPTIMIZER,
        scheduler: SchedulerFactory | None = REFERENCE_SCHEDULER,
        gradient_clip_norm: float | None = 5.0,
        train_step: str = "auto",
        compile_step: bool = False,
        objective: str = "cross_entropy",
        samples: int = 5,
        baseline: str = "mean_of_others",
        temperature: float = 1.0,
        reward: Reward | None = None,
        **decoder_sizes: Any,
    ) -> None:
        """`objective`: cross_entropy, or self_critical with `samples` captions per image drawn at `temperature`,
        scored by `reward` against a `baseline` (mean_of_others or greedy)."""
        super().__init__()
        for name, value, choices in (
            ("train_step", train_step, TRAIN_STEPS),
            ("objective", objective, objectives.OBJECTIVES),
            ("baseline", baseline, objectives.BASELINES),
            ("attention_target", attention_target, objectives.PENALTY_TARGETS),
        ):
            if value not in choices:
                raise ConfigError(
                    f"model.{name}={value} is not one of {', '.join(choices)}: e.g. model.{name}={choices[0]}"
                )
        if objective == "self_critical" and reward is None:
            raise ConfigError(
                "model.objective=self_critical needs a reward: use experiment=scst (model.reward: CIDEr-D)."
            )
        # The step is written out (forward, backward, clipping, optimizer) so that a CUDA graph can hold most of it.
        self.automatic_optimization = False
        # The optimizer, scheduler and reward are objects: the run's config records them, checkpoints do not.
        self.save_hyperparameters(ignore=["encoder", "optimizer", "scheduler", "reward"])
        self.encoder = encoder
        self.vocabulary = Vocabulary(vocabulary)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.reward = reward
        self.decoder = AttentionDecoder(
            len(self.vocabulary),
            encoder.feature_dim,
            pad_id=self.vocabulary.pad_id,
            bos_id=self.vocabulary.bos_id,
            eos_id=self.vocabulary.eos_id,
            unk_id=self.vocabulary.unk_id,
            **decoder_sizes,
        )
        self.training_path = TrainingPath(train_step, max_caption_length, self.vocabulary.pad_id, compile_step)

    # --- checkpoints without the frozen encoder ----------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {
            name: tensor for name, tensor in checkpoint["state_dict"].items() if not name.startswith("encoder.")
        }
        checkpoint["encoder"] = self.encoder.settings  # weights, random_init_seed, arch, grid, image_size
        # The generator's state where the run stopped: a resumed run then draws the same shuffles, dropout and
        # self-critical samples as one that never stopped.
        checkpoint["rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resuming (ckpt_path=): the frozen encoder's weights join the state, and the generator is restored."""
        self.add_encoder_state(checkpoint)
        if "rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["rng_state"])

    def add_encoder_state(self, checkpoint: dict) -> None:
        """Add the frozen encoder's weights to `checkpoint`'s state, refusing one trained on another encoder."""
        saved = saved_encoder_settings(checkpoint)
        saved_identity = encoder_identity(**saved)
        if (saved_identity, saved["image_size"]) != (self.encoder.identity, self.encoder.image_size):
            keys = " ".join(
                f"model.encoder.{name}={'null' if value is None else value}" for name, value in saved.items()
            )
            raise CheckpointError(
                f"The checkpoint was trained on the features of {saved_identity} at {saved['image_size']} px, this "
                f"run uses {self.encoder.identity} at {self.encoder.image_size} px: set {keys}."
            )
        encoder_state = {f"encoder.{name}": tensor for name, tensor in self.encoder.state_dict().items()}
        checkpoint["state_dict"] = {**checkpoint["state_dict"], **encoder_state}

    def load_weights(self, checkpoint: dict) -> None:
        """Start from the weights of `checkpoint` alone (init_from=): no optimizer, schedule or counters."""
        self.add_encoder_state(checkpoint)
        try:
            self.load_state_dict(checkpoint["state_dict"])
        except (KeyError, RuntimeError) as error:
            raise CheckpointError(f"The checkpoint's weights do not fit this model: {str(error)[:300]}") from error

    # --- forward -------------------------------------------------------------------------------------------
    def region_features(self, batch: dict) -> torch.Tensor:
        """Cached features of the batch, or the frozen encoder's features of its images."""
        if "features" in batch:
            return batch["features"].float()  # (B, R, D), read from the cache as float16
        with torch.no_grad():
            return self.encoder(batch["images"])  # (B, R, D)

    def _teacher_forced(self, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The inputs and targets (N, T-1) of teacher forcing on `captions` (N, T): each word predicts the next,
        and nothing follows `<eos>`."""
        inputs, targets = captions[:, :-1], captions[:, 1:]  # (N, T-1)
        return inputs.masked_fill(inputs == self.vocabulary.eos_id, self.vocabulary.pad_id), targets

    def caption_loss(
        self, features: torch.Tensor, captions: torch.Tensor, padded: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean cross-entropy per word of `captions` (N, T) (`<bos>` ... `<eos>`), ignoring `<pad>`; the number
        of words scored (0-d); and the doubly stochastic attention penalty, already times its lambda (0 if off).

        `padded`: fixed shapes (`teacher_forcing.padded`) for normalised `features`, where blank rows (all
        `<pad>`) may fill the batch; they count in neither term.
        """
        pad_id = self.vocabulary.pad_id
        inputs, targets = self._teacher_forced(captions)  # (N, T-1) each
        if padded:
            step = self.training_path.compiled_step(self.decoder)
            logits, attention = teacher_forcing.padded(self.decoder, features, inputs, step)  # (N, T-1, V), (.., R)
            cross_entropy, words = objectives.cross_entropy(logits.flatten(0, 1), targets.flatten(), pad_id)
        else:
            outputs = teacher_forcing.packed(self.decoder, features, inputs)
            word_targets = targets.flatten()[outputs.positions]  # (N,)
            cross_entropy, words = objectives.cross_entropy(outputs.logits, word_targets, pad_id)
            attention = outputs.unpacked("attention", inputs.shape)  # (N, T-1, R)
        penalty = torch.zeros((), device=features.device)
        if self.hparams.attention_reg > 0:
            strength, target = self.hparams.attention_reg, self.hparams.get("attention_target", "one")
            penalty = objectives.attention_penalty(attention, targets != pad_id, strength, target)
        return cross_entropy, words, penalty

    def caption_losses(self, features: torch.Tensor, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The summed cross-entropy (N,) and the number of words scored (N,) of each of `captions` (N, T) on
        `features` (N, R, D), by the packed path: `caption_loss` per caption, without the penalty (evaluation)."""
        inputs, targets = self._teacher_forced(captions)  # (N, T-1) each
        outputs = teacher_forcing.packed(self.decoder, features, inputs)
        word_targets = targets.flatten()[outputs.positions]  # (W,)
        rows = outputs.positions // inputs.size(1)  # (W,): the caption of each word
        return objectives.cross_entropy_per_row(
            outputs.logits, word_targets, rows, len(captions), self.vocabulary.pad_id
        )

    def generate(
        self,
        features: torch.Tensor,
        beam_size: int = 1,
        length_penalty: float = 0.0,
        allow_unk: bool = False,
        block_trigrams: bool = False,
    ) -> Generation:
        max_length = self.hparams.max_caption_length
        return self.decoder.generate(features, max_length, beam_size, length_penalty, allow_unk, block_trigrams)

    @torch.no_grad()
    def caption(
        self,
        features: torch.Tensor,
        beam_size: int = 1,
        length_penalty: float = 0.0,
        allow_unk: bool = False,
        block_trigrams: bool = False,
    ) -> list[tuple[list[str], torch.Tensor]]:
        """Each image's generated words and their attention (words, R): the one decoding that validation,
        evaluation and caption.py report. Beam search ranks by log-probability / length ** `length_penalty`;
        `<unk>` is never generated unless `allow_unk`, nor a repeated trigram with `block_trigrams`."""
        generation = self.generate(features, beam_size, length_penalty, allow_unk, block_trigrams)
        captions = []
        for tokens, attention in zip(generation.tokens.tolist(), generation.attention.float().cpu()):
            words = self.vocabulary.words(tokens)
            captions.append((words, attention[: len(words)]))
        return captions

    # --- cross-entropy steps -----------------------------------------------------------------------------------
    def _backward(self, loss: torch.Tensor) -> None:
        if self._trainer is not None:
            self.manual_backward(loss)
        else:  # a module driven by hand (the benchmarks, the tests)
            loss.backward()
        if self.hparams.get("gradient_clip_norm"):
            torch.nn.utils.clip_grad_norm_(self.decoder.parameters(), self.hparams.gradient_clip_norm)

    def learn(
        self, features: torch.Tensor, captions: torch.Tensor, padded: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward, backward and gradient clipping of one batch: the part of a step a CUDA graph can hold.
        Returns the cross-entropy, the number of words and the penalty, detached."""
        cross_entropy, words, penalty = self.caption_loss(features, captions, padded)
        self._backward(cross_entropy + penalty)
        return cross_entropy.detach(), words, penalty.detach()

    def _path(self, features: torch.Tensor) -> str:
        world_size = 1 if self._trainer is None else self.trainer.world_size
        return self.training_path.resolve(features.is_cuda, world_size)

    def compute_gradients(
        self, features: torch.Tensor, captions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`learn` on a batch of features (B, R, D) and captions (B, T) by the configured path (see
        `TrainingPath`), leaving the gradients in `.grad` for the optimizer."""
        return self.training_path(self.learn, self.decoder, features, captions, self._path(features))

    def on_fit_start(self) -> None:
        if self.hparams.objective == "cross_entropy":
            self._path(torch.empty(0, device=self.device))  # a choice that cannot work here fails now
        else:
            references = self.trainer.datamodule.reference_ids("train")
            self.reward.fit(references, self.vocabulary)  # the same training references on every rank

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.hparams.objective == "self_critical":
            return self._self_critical_step(batch)
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

    # --- self-critical steps ----------------------------------------------------------------------------------
    def self_critical_gradients(self, features: torch.Tensor, references: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward and backward of one SCST batch of B images (features B x R x D) with all their references
        (B, references, T): sample S captions of each, score them and the greedy captions by the reward, and
        follow the samples' policy gradient against the baseline, leaving the gradients in `.grad`. Returns
        the loss and what the log shows, detached."""
        images, samples = len(features), self.hparams.samples
        max_length = self.hparams.max_caption_length
        self.decoder.eval()
        greedy = self.decoder.greedy(features, max_length)  # (B, L): the greedy baseline's caption, and the log's
        self.decoder.train()
        sampled = self.decoder.sample(features, samples, max_length, self.hparams.temperature)  # (B*S, L)
        pad = self.vocabulary.pad_id
        width = max(sampled.tokens.size(1), greedy.tokens.size(1))
        candidates = torch.cat(
            [
                F.pad(generation.tokens, (0, width - generation.tokens.size(1)), value=pad)
                for generation in (sampled, greedy)
            ]
        )  # (B*S + B, L)
        image_ids = torch.arange(images, device=features.device)
        image = torch.cat([image_ids.repeat_interleave(samples), image_ids])  # (B*S + B,): whose references
        with torch.no_grad():
            scores = self.reward(candidates, image, references).to(features.dtype)  # (B*S + B,)
        rewards, greedy_rewards = scores[: images * samples].view(images, samples), scores[images * samples :]
        baseline = objectives.self_critical_baseline(rewards, greedy_rewards, self.hparams.baseline)  # (B, S)
        loss = objectives.self_critical(sampled.log_probs, sampled.tokens, (rewards - baseline).flatten(), pad)
        self.decoder.zero_grad(set_to_none=True)
        self._backward(loss)
        words = (sampled.tokens != pad).to(features.dtype)
        return {
            "train/loss": loss.detach(),
            "train/reward": rewards.mean(),  # the samples' reward (their CIDEr-D)
            "train/baseline": baseline.mean(),
            "train/greedy_reward": greedy_rewards.mean(),  # the greedy captions' reward
            "train/entropy": (sampled.entropy.detach() * words).sum() / words.sum().clamp(min=1),  # per sampled word
        }

    def _self_critical_step(self, batch: dict) -> torch.Tensor:
        if batch["captions"].dim() != 3:
            raise ConfigError(
                "model.objective=self_critical scores each image's samples against all its references: train on "
                "images, not captions, with data.train_per_image=true (as experiment=scst does)."
            )
        features = self.region_features(batch)  # (B, R, D)
        logged = self.self_critical_gradients(features, batch["captions"])
        self.optimizers().step()
        images = len(features)
        self.log("train/loss", logged.pop("train/loss"), on_step=True, on_epoch=True, batch_size=images)
        self.log("train/reward", logged.pop("train/reward"), on_epoch=True, prog_bar=True, batch_size=images)
        self.log_dict(logged, on_step=False, on_epoch=True, batch_size=images)

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
