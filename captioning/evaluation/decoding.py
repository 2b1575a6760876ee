"""Captioning a whole split: generated caption, references and per-word attention of every image."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from captioning.evaluation.bootstrap import ImageStatistics, mean_statistics
from captioning.model.lightning_module import CaptioningModule

log = logging.getLogger(__name__)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


@torch.no_grad()
def decode_images(
    module: CaptioningModule,
    loader: DataLoader,
    beam_size: int,
    root: Path,
    blind: bool = False,
    length_penalty: float = 0.0,
    allow_unk: bool = False,
    block_trigrams: bool = False,
) -> list[dict]:
    """One record per image: `image` (path under `root`), `generated` (its words joined by spaces),
    `references` and `attention` (one row of region weights per generated word). Warns of empty captions.

    `blind` captions each image from the previous image's features (the first from its batch's last): the
    score of a model that ignores the image it is given. Beam search ranks its hypotheses by log-probability
    / length ** `length_penalty`; `<unk>` is generated only if `allow_unk`, a repeated trigram never with
    `block_trigrams`.
    """
    predictions = []
    previous_last = None  # blind: the features of the previous batch's last image
    for batch in tqdm(loader, desc=f"Captioning (beam {beam_size})", unit="batch"):
        features = module.region_features(_to_device(batch, module.device))  # (B, R, D)
        if blind:
            shifted = features.roll(1, dims=0)  # each image gets the previous image's features
            if previous_last is not None:
                shifted[0] = previous_last
            previous_last = features[-1]
            features = shifted
        captions = module.caption(features, beam_size, length_penalty, allow_unk, block_trigrams)
        for (words, attention), references, path in zip(captions, batch["references"], batch["image_paths"]):
            predictions.append(
                {
                    "image": Path(path).relative_to(root).as_posix(),
                    "generated": " ".join(words),
                    "references": list(references),
                    "attention": attention.tolist(),
                }
            )
    warn_of_empty_captions([prediction["generated"] for prediction in predictions], beam_size, length_penalty)
    return predictions


def repeats_a_trigram(caption: str) -> bool:
    """Whether some word trigram occurs twice in `caption`: the loops of a decoder."""
    words = caption.split()
    trigrams = list(zip(words, words[1:], words[2:]))
    return len(set(trigrams)) < len(trigrams)


def caption_statistics(captions: list[str]) -> ImageStatistics:
    """Each image's share of its caption in `empty_captions` (no word), `repeated_trigrams` (some word trigram
    twice) and its `mean_length` in words: their corpus values are means over the images."""
    return mean_statistics(
        {
            "empty_captions": [not caption for caption in captions],
            "repeated_trigrams": [repeats_a_trigram(caption) for caption in captions],
            "mean_length": [len(caption.split()) for caption in captions],
        }
    )


def warn_of_empty_captions(captions: list[str], beam_size: int, length_penalty: float) -> None:
    """Log a warning when some `captions` are empty, a sign that `<eos>` at once outscored every real caption:
    every metric of those images is 0."""
    empty = sum(not caption for caption in captions)
    if empty == 0:
        return
    if beam_size > 1:  # a caption that ends at once scores highest when nothing corrects for length
        remedy = f"<eos> at once outscored every caption; raise eval.length_penalty (now {length_penalty})"
    else:
        remedy = "greedy decoding chose <eos> first"
    log.warning(
        f"{empty} of {len(captions)} generated captions ({empty / len(captions):.0%}) are empty "
        f"(beam {beam_size}): {remedy}"
    )


@torch.no_grad()
def caption_losses(
    module: CaptioningModule,
    dataset: torch.utils.data.Dataset,
    pairs: list[tuple[int, int]],
    blind: bool = False,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """The summed cross-entropy (N,) and the number of words (N,) of each of the N images of an ImageReferences set,
    over its captions among the (image position, reference index) `pairs` (0 for an image with none): their ratio
    is the loss per word. `blind` scores each caption against the features of the image before its own."""
    losses, words = np.zeros(len(dataset)), np.zeros(len(dataset))
    shift = 1 if blind else 0
    for start in tqdm(range(0, len(pairs), batch_size), desc=f"Loss on {len(pairs)} captions", unit="batch"):
        chunk = pairs[start : start + batch_size]
        inputs = torch.stack(
            [dataset.source[dataset.image_indices[(image - shift) % len(dataset)]] for image, _ in chunk]
        )  # (n, ...): features or pixels
        captions = torch.nn.utils.rnn.pad_sequence(
            [dataset.captions[image][reference] for image, reference in chunk],
            batch_first=True,
            padding_value=module.vocabulary.pad_id,
        )
        features = module.region_features({dataset.source.batch_key: inputs.to(module.device)})  # (n, R, D)
        loss, count = module.caption_losses(features, captions.to(module.device))  # (n,), (n,)
        images = [image for image, _ in chunk]
        np.add.at(losses, images, loss.double().cpu().numpy())
        np.add.at(words, images, count.double().cpu().numpy())
    return losses, words
