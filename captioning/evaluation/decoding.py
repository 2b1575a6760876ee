"""Captioning a whole split: generated caption, references and per-word attention of every image."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

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


def empty_share(captions: list[str]) -> float:
    """The share of `captions` without a word (0 for none)."""
    return sum(not caption for caption in captions) / max(len(captions), 1)


def repeated_trigram_share(captions: list[str]) -> float:
    """The share of `captions` in which some word trigram occurs twice (0 for none): the loops of a decoder."""

    def repeats(words: list[str]) -> bool:
        trigrams = list(zip(words, words[1:], words[2:]))
        return len(set(trigrams)) < len(trigrams)

    return sum(repeats(caption.split()) for caption in captions) / max(len(captions), 1)


def mean_length(captions: list[str]) -> float:
    """The mean number of words of `captions` (0 for none)."""
    return sum(len(caption.split()) for caption in captions) / max(len(captions), 1)


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
def caption_loss(
    module: CaptioningModule,
    dataset: torch.utils.data.Dataset,
    pairs: list[tuple[int, int]],
    batch_size: int = 64,
    blind: bool = False,
) -> float:
    """Mean cross-entropy per word over (image position, reference index) `pairs` of an ImageReferences set;
    `blind` scores each caption against the features of the image before its own in the split."""
    total, words = 0.0, 0
    for start in tqdm(range(0, len(pairs), batch_size), desc=f"Loss on {len(pairs)} captions", unit="batch"):
        chunk = pairs[start : start + batch_size]
        shift = 1 if blind else 0
        features = torch.stack(
            [dataset.source[dataset.image_indices[(image - shift) % len(dataset)]] for image, _ in chunk]
        )  # (N, R, D)
        captions = torch.nn.utils.rnn.pad_sequence(
            [dataset.captions[image][reference] for image, reference in chunk],
            batch_first=True,
            padding_value=module.vocabulary.pad_id,
        )
        features = module.region_features({dataset.source.batch_key: features.to(module.device)})
        loss, count, _ = module.caption_loss(features, captions.to(module.device))
        count = int(count)
        total += loss.item() * count
        words += count
    return total / max(words, 1)
