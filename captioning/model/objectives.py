"""What training minimises, each a function of the model's outputs: cross-entropy with the doubly stochastic
attention penalty, and the self-critical policy gradient (SCST, Rennie et al. 2017) with its baselines."""

from __future__ import annotations

import torch
import torch.nn.functional as F

OBJECTIVES = ("cross_entropy", "self_critical")
BASELINES = ("mean_of_others", "greedy")  # ICP's "new self-critical", and the paper's greedy caption
PENALTY_TARGETS = ("one", "at_most_one")  # what each region's total attention over a caption is held to


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy per word of the `targets` (N,) under `logits` (N, V), `<pad>` ignored, and the number
    of words scored (0-d)."""
    return F.cross_entropy(logits, targets, ignore_index=pad_id), (targets != pad_id).sum()


def cross_entropy_per_row(
    logits: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, num_rows: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed cross-entropy (num_rows,) and the number of words (num_rows,) of each row (caption) whose words
    `targets` (N,) under `logits` (N, V) sit in `rows` (N,); `<pad>` ignored. Their totals' ratio is
    `cross_entropy`'s mean."""
    losses = F.cross_entropy(logits, targets, ignore_index=pad_id, reduction="none")  # (N,), 0 at <pad>
    scored = (targets != pad_id).to(losses.dtype)
    return losses.new_zeros(num_rows).index_add(0, rows, losses), scored.new_zeros(num_rows).index_add(0, rows, scored)


def attention_penalty(
    attention: torch.Tensor, scored: torch.Tensor, strength: float, target: str = "one"
) -> torch.Tensor:
    """The doubly stochastic attention penalty, times its `strength`, for attention (B, T, R) at the `scored`
    words (B, T): the mean over captions and regions of (1 - c)^2 for each region's total attention c over the
    caption (`one`, the paper's), or of max(c - 1, 0)^2 (`at_most_one`: no region is looked at more than once
    in all, and a region left unseen costs nothing). A caption shorter than the number of regions cannot give
    each region 1, so `one` pushes every map towards uniform. (A target of T / R would change nothing: the
    coverages sum to T, so its penalty differs from `one`'s by a constant.) Blank rows count in neither sum."""
    mask = scored.unsqueeze(2).to(attention.dtype)  # (B, T, 1)
    coverage = (attention * mask).sum(dim=1)  # (B, R): the total attention each region got
    captioned = mask[:, 0]  # (B, 1): 0 for a blank row
    shortfall = (coverage - 1).clamp(min=0) if target == "at_most_one" else 1 - coverage  # (B, R)
    squares = (shortfall**2 * captioned).sum()
    return strength * squares / (captioned.sum() * coverage.size(1)).clamp(min=1)


def self_critical_baseline(rewards: torch.Tensor, greedy_rewards: torch.Tensor | None, kind: str) -> torch.Tensor:
    """The baseline (B, S) of each of the S samples of B images (`rewards`, B x S): the mean reward of the
    image's other samples (`mean_of_others`), or the reward of its greedy caption (`greedy`, B)."""
    if kind == "greedy":
        return greedy_rewards.unsqueeze(1).expand_as(rewards)
    samples = rewards.size(1)
    return (rewards.sum(dim=1, keepdim=True) - rewards) / max(samples - 1, 1)


def self_critical(log_probs: torch.Tensor, tokens: torch.Tensor, advantages: torch.Tensor, pad_id: int) -> torch.Tensor:
    """The self-critical loss: -(reward - baseline) x log p(word), averaged over the sampled words (N, L), its
    `<eos>` included and the `<pad>` after it masked out; `advantages` (N,) are reward minus baseline."""
    mask = (tokens != pad_id).to(log_probs.dtype)  # (N, L)
    return -(log_probs * mask * advantages.unsqueeze(1)).sum() / mask.sum().clamp(min=1)
