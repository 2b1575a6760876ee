"""How sharp the attention maps are and whether they move: peak weight, entropy and word-to-word change.

A map that stays near uniform (peak close to 1/R, entropy close to log R, no change between words) is
attention in name only, whatever its grounding; these figures tell the two apart.
"""

from __future__ import annotations

import math

import torch


def attention_statistics(predictions: list[dict]) -> dict:
    """Mean peak weight (and its ratio to uniform), entropy (nats) and L1 change between consecutive words'
    maps, over every generated word of `predictions` (as decode_images returns)."""
    maps = [torch.tensor(prediction["attention"], dtype=torch.float64) for prediction in predictions]
    maps = [caption_maps for caption_maps in maps if caption_maps.numel()]  # (T, R) each; empty captions have none
    if not maps:
        return {
            "attention_peak": None,
            "attention_peak_over_uniform": None,
            "attention_entropy": None,
            "attention_entropy_uniform": None,
            "attention_change": None,
        }
    regions = maps[0].shape[1]
    words = torch.cat(maps)  # (words, R)
    entropy = -(words * words.clamp_min(1e-12).log()).sum(1)
    changes = [(caption_maps[1:] - caption_maps[:-1]).abs().sum(1) for caption_maps in maps]  # (T - 1,) each
    changes = torch.cat(changes)
    peak = words.max(1).values.mean().item()
    return {
        "attention_peak": peak,
        "attention_peak_over_uniform": peak * regions,
        "attention_entropy": entropy.mean().item(),
        "attention_entropy_uniform": math.log(regions),
        "attention_change": changes.mean().item() if changes.numel() else None,
    }
