"""How sharp the attention maps are and whether they move: peak weight, entropy and word-to-word change.

A map that stays near uniform (peak close to 1/R, entropy close to log R, no change between words) is
attention in name only, whatever its grounding; these figures tell the two apart.
"""

from __future__ import annotations

import math

import torch

from captioning.evaluation.bootstrap import ImageStatistics, ratio_statistics

# The keys of attention_statistics, in its order.
ATTENTION_KEYS = (
    "attention_peak",
    "attention_peak_over_uniform",
    "attention_entropy",
    "attention_entropy_uniform",
    "attention_change",
)


def attention_image_statistics(predictions: list[dict]) -> ImageStatistics:
    """Each image's sums of peak weight and entropy over its words and of L1 change between its consecutive words'
    maps (predictions as decode_images returns): attention_peak, its ratio to uniform and attention_entropy are
    means over every generated word, attention_change over every pair of consecutive words of a caption."""
    maps = [torch.tensor(prediction["attention"], dtype=torch.float64) for prediction in predictions]
    regions = next((caption_maps.shape[1] for caption_maps in maps if caption_maps.numel()), 1)
    peaks, entropies, changes, words, transitions = [], [], [], [], []
    for caption_maps in maps:  # (T, R); an empty caption has none
        caption_maps = caption_maps.reshape(-1, regions)
        peaks.append(caption_maps.max(1).values.sum().item() if len(caption_maps) else 0.0)
        entropies.append(-(caption_maps * caption_maps.clamp_min(1e-12).log()).sum().item())
        changes.append((caption_maps[1:] - caption_maps[:-1]).abs().sum().item())
        words.append(len(caption_maps))
        transitions.append(max(len(caption_maps) - 1, 0))
    return ratio_statistics(
        {
            "attention_peak": peaks,
            "attention_peak_over_uniform": [peak * regions for peak in peaks],
            "attention_entropy": entropies,
            "attention_change": changes,
        },
        {
            "attention_peak": words,
            "attention_peak_over_uniform": words,
            "attention_entropy": words,
            "attention_change": transitions,
        },
    )


def attention_statistics(predictions: list[dict]) -> dict:
    """Mean peak weight (and its ratio to uniform), entropy (nats) and L1 change between consecutive words'
    maps, over every generated word of `predictions` (as decode_images returns); None without words."""
    statistics = attention_image_statistics(predictions).corpus()
    regions = next((len(prediction["attention"][0]) for prediction in predictions if prediction["attention"]), None)
    statistics["attention_entropy_uniform"] = math.log(regions) if regions else None
    return {name: statistics[name] for name in ATTENTION_KEYS}
