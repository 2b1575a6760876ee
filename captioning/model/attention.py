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

    def forward(
        self, features: torch.Tensor, projected_features: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the context vector (B, D) and the attention weights (B, R) for hidden state (B, H)."""
        query = self.hidden_projection(hidden).unsqueeze(1)  # (B, 1, A)
        scores = self.score(torch.tanh(projected_features + query)).squeeze(2)  # (B, R)
        weights = scores.softmax(dim=1)  # (B, R)
        context = torch.bmm(weights.unsqueeze(1), features).squeeze(1)  # (B, D)
        return context, weights
