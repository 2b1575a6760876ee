"""The decoder computed the way the well-known tutorial writes it: one plain loop over the words.

Nothing is hoisted out of the loop (the regions are projected again at every step; the word, context and
output products run one step at a time) and every caption runs every step. It shares the decoder's weights,
so it is the reference the decoder's own paths are tested against and the baseline the benchmarks time.
"""

from __future__ import annotations

import torch

from captioning.model.decoder import AttentionDecoder


def tutorial_forward(decoder: AttentionDecoder, features: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) of the word after each input word of `captions` (B, T), step by step."""
    features = decoder.feature_norm(features.flatten(0, 1)).view_as(features)  # (B, R, D)
    mean_feature = features.mean(dim=1)
    hidden = torch.tanh(decoder.init_hidden(mean_feature))
    cell = torch.tanh(decoder.init_cell(mean_feature))
    attention = decoder.attention
    logits = []
    for step in range(captions.size(1)):
        projected = attention.feature_projection(features)  # (B, R, A), again at every step
        scores = attention.score(torch.tanh(projected + attention.hidden_projection(hidden).unsqueeze(1)))  # (B,R,1)
        weights = scores.squeeze(2).softmax(dim=1)  # (B, R)
        context = torch.bmm(weights.unsqueeze(1), features).squeeze(1)  # (B, D)
        context = torch.sigmoid(decoder.context_gate(hidden)) * context
        word = decoder.dropout(decoder.embedding(captions[:, step]))  # (B, E)
        gates = decoder.word_to_gates(word) + decoder.context_to_gates(context) + decoder.hidden_to_gates(hidden)
        input_gate, forget_gate, candidate, output_gate = gates.chunk(4, dim=1)
        cell = torch.sigmoid(forget_gate) * cell + torch.sigmoid(input_gate) * torch.tanh(candidate)
        hidden = torch.sigmoid(output_gate) * torch.tanh(cell)
        logits.append(decoder.output(decoder.dropout(hidden)))  # (B, V), one step at a time
    return torch.stack(logits, dim=1)
