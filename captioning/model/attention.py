"""Soft additive attention over image regions (Bahdanau et al., as used in Show, Attend and Tell)."""

from __future__ import annotations

import torch
from torch import nn


class AdditiveAttention(nn.Module):
    """score(region, h) = v . tanh(W_f feature + W_h h); weights are a softmax over the regions."""

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.feature_projection = nn.Linear(feature_dim, attention_dim)
        self.hidden_projection = nn.Linear(hidden_dim, attention_dim, bias=False)
        self.score = nn.Linear(attention_dim, 1)

    def project_features(self, features: torch.Tensor) -> torch.Tensor:
        """The hidden-independent half of the score, computed once per image rather than once per word."""
        return self.feature_projection(features)  # (B, R, A)

    def forward(self, projected_features: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Attention weights (N, R) for the projected hidden states `query` = hidden_projection(h) (N, A),
        which the decoder computes together with its other products of h.

        N may be K times the number of images B (K beams per image, adjacent rows): the K queries of an
        image then share its projected features (B, R, A) instead of K copies of them.
        """
        batch, regions, attention_dim = projected_features.shape
        queries = query.view(batch, -1, 1, attention_dim)  # (B, K, 1, A)
        hidden_scores = torch.add(projected_features.unsqueeze(1), queries).tanh_()  # (B, K, R, A)
        # score's single output as a matrix-vector product: its backward needs no matrix products of width 1
        scores = torch.matmul(hidden_scores, self.score.weight.view(attention_dim)) + self.score.bias  # (B, K, R)
        return scores.softmax(dim=2).flatten(0, 1)  # (N, R)

    def read(self, regions: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The weighted sum of the regions (B, R, C) under the attention `weights` (N, R): (N, C), where the
        K adjacent rows of an image (N = K x B, as in `weights`) read its regions."""
        batch, regions_count, _ = regions.shape
        return torch.bmm(weights.view(batch, -1, regions_count), regions).flatten(0, 1)  # (N, C)
