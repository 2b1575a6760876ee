"""LightningModule: the frozen encoder and the attention decoder, trained with cross-entropy."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from captioning.data.images import load_image
from captioning.data.vocabulary import Vocabulary
from captioning.errors import CheckpointError
from captioning.model.decoder import AttentionDecoder, Generation
from captioning.model.encoder import ResNet50Encoder, encoder_identity
from captioning.visual.attention import attention_figure


class CaptioningModule(L.LightningModule):
    """Show, Attend and Tell. Checkpoints hold the decoder, the vocabulary and the encoder's name, not its
    frozen weights (rebuilt from torchvision), and contain only tensors and plain Python values."""

    def __init__(
        self,
        encoder: ResNet50Encoder,
        vocabulary: list[str],
        embed_dim: int = 256,
        hidden_dim: int = 256,
        attention_dim: int = 256,
        dropout: float = 0.5,
        attention_reg: float = 0.0,
        lr: float = 1e-3,
        lr_step_size: int = 10,
        lr_gamma: float = 0.5,
        max_caption_length: int = 20,
        logged_samples: int = 4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoder"])
        self.encoder = encoder
        self.vocabulary = Vocabulary(vocabulary)
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
        self._validation_samples: dict | None = None

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

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        _, features = self._reference_loss(batch, "val/loss")
        if batch_idx == 0 and not self.trainer.sanity_checking:
            count = self.hparams.logged_samples
            generation = self.generate(features[:count])
            self._validation_samples = {
                "generation": generation,
                "references": batch["references"][:count],
                "image_paths": batch["image_paths"][:count],
            }

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._reference_loss(batch, "test/loss")

    def on_validation_epoch_end(self) -> None:
        """Log generated captions next to their ground truth, and one attention figure, to TensorBoard."""
        samples, self._validation_samples = self._validation_samples, None
        if samples is None or not isinstance(self.logger, TensorBoardLogger):
            return
        generation = samples["generation"]
        rows = ["| generated | ground truth |", "|---|---|"]
        for tokens, references in zip(generation.tokens.tolist(), samples["references"]):
            rows.append(f"| {self.vocabulary.decode(tokens)} | {references[0]} |")
        self.logger.experiment.add_text("val/captions", "\n".join(rows), self.current_epoch)
        words = self.vocabulary.words(generation.tokens[0].tolist())
        figure = attention_figure(
            load_image(samples["image_paths"][0]), words, generation.attention[0, : len(words)].float().cpu()
        )
        self.logger.experiment.add_figure("val/attention", figure, self.current_epoch)

    def configure_optimizers(self) -> dict:
        # Fused Adam is the fastest, but Lightning's mixed-precision plugins refuse to clip its gradients.
        mixed_precision = self._trainer is not None and "mixed" in str(self.trainer.precision)
        optimizer = torch.optim.Adam(self.decoder.parameters(), lr=self.hparams.lr, fused=not mixed_precision)
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=self.hparams.lr_step_size, gamma=self.hparams.lr_gamma
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
