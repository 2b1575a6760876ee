"""LSTM decoder with soft attention: teacher forcing for training, greedy and beam search for generation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from captioning.model.attention import AdditiveAttention
from captioning.model.recurrence import AttentionLSTMRecurrence


@dataclass
class Generation:
    """Generated ids (B, L), `<eos>` and `<pad>` included, the attention of every step (B, L, R), and the
    log-probability of each generated word given the words before it (B, L), 0 for the `<pad>` after `<eos>`."""

    tokens: torch.Tensor
    attention: torch.Tensor
    log_probs: torch.Tensor


def _unpack(packed: torch.Tensor, positions: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Rows (N, C) of the words at flat `positions` (N,) into a zero-filled (B, T, C) of `shape` (B, T)."""
    padded = packed.new_zeros(shape.numel(), packed.size(1)).index_copy(0, positions, packed)
    return padded.view(*shape, -1)  # (B, T, C)


def _hidden_products(
    hidden: torch.Tensor, hidden_weights: tuple[torch.Tensor, torch.Tensor], attention_dim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The stacked product of h (see `_hidden_weights`), split: attention query (N, A), context gate
    pre-activation (N, 1) and the LSTM gates' share (N, 4H)."""
    from_hidden = F.linear(hidden, *hidden_weights)  # (N, A + 1 + 4H)
    return from_hidden.split([attention_dim, 1, from_hidden.size(1) - attention_dim - 1], dim=1)


def _lstm_update(gates: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LSTM from its gate pre-activations (N, 4H), in the order input, forget, candidate, output."""
    input_gate, forget_gate, candidate, output_gate = gates.chunk(4, dim=1)
    cell = torch.sigmoid(forget_gate) * cell + torch.sigmoid(input_gate) * torch.tanh(candidate)
    return torch.sigmoid(output_gate) * torch.tanh(cell), cell  # (N, H), (N, H)


class AttentionDecoder(nn.Module):
    """Show, Attend and Tell decoder: at each word, attend to the regions and feed the gated context to an LSTM.

    The LSTM is written out (one product per input) so that the word half of its input product, which does
    not depend on the recurrence, is computed for all steps at once.
    """

    def __init__(
        self,
        vocab_size: int,
        feature_dim: int = 2048,
        embed_dim: int = 256,
        hidden_dim: int = 256,
        attention_dim: int = 256,
        dropout: float = 0.5,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        # A frozen encoder's features can have any scale and offset (a random one's especially, whose regions
        # differ by under 1% of their norm): standardise every channel with statistics learnt over the data.
        # No affine part: the linear layers that read the features scale them anyway, and without it the
        # normalised features need no gradient, which spares the backward pass a (B, R, D) product per word.
        self.feature_norm = nn.BatchNorm1d(feature_dim, affine=False)
        self.attention = AdditiveAttention(feature_dim, hidden_dim, attention_dim)
        self.init_hidden = nn.Linear(feature_dim, hidden_dim)
        self.init_cell = nn.Linear(feature_dim, hidden_dim)
        self.context_gate = nn.Linear(hidden_dim, 1)  # the scalar beta of the paper
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.word_to_gates = nn.Linear(embed_dim, 4 * hidden_dim)
        self.context_to_gates = nn.Linear(feature_dim, 4 * hidden_dim, bias=False)
        self.hidden_to_gates = nn.Linear(hidden_dim, 4 * hidden_dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_dim, vocab_size)
        # Teacher forcing through AttentionLSTMRecurrence's hand-written backward pass; False leaves the same
        # steps to autograd (the reference it is tested against).
        self.fused_recurrence = True

    def _start(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.feature_norm(features.flatten(0, 1)).view_as(features)  # (B, R, D)
        projected = self.attention.project_features(features)  # (B, R, A)
        mean_feature = features.mean(dim=1)  # (B, D)
        hidden = torch.tanh(self.init_hidden(mean_feature))  # (B, H)
        cell = torch.tanh(self.init_cell(mean_feature))  # (B, H)
        return features, projected, hidden, cell

    def _hidden_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The three products of the previous hidden state (attention query, context gate, LSTM gates)
        stacked into one matrix, so that a step multiplies h once: weight (A + 1 + 4H, H) and its bias."""
        weight = torch.cat(
            [self.attention.hidden_projection.weight, self.context_gate.weight, self.hidden_to_gates.weight]
        )
        attention_dim = self.attention.hidden_projection.out_features
        bias = F.pad(self.context_gate.bias, (attention_dim, self.hidden_to_gates.out_features))
        return weight, bias

    def _step(
        self,
        word_gates: torch.Tensor,
        features: torch.Tensor,
        projected: torch.Tensor,
        hidden: torch.Tensor,
        cell: torch.Tensor,
        hidden_weights: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One LSTM step from the word's share of the gates (B, 4H); returns hidden, cell, attention (B, R)."""
        query, gate, hidden_gates = _hidden_products(hidden, hidden_weights, projected.size(2))
        context, weights = self.attention(features, projected, query)  # (B, D), (B, R)
        context = torch.sigmoid(gate) * context  # (B, D): the gated context of the paper
        gates = torch.addmm(word_gates + hidden_gates, context, self.context_to_gates.weight.t())  # (B, 4H)
        hidden, cell = _lstm_update(gates, cell)
        return hidden, cell, weights

    def _teacher_forced(
        self, features: torch.Tensor, captions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Hidden states (N, H) and attention (N, R) of the N real (non-`<pad>`) input words of `captions`
        (B, T), and their flat positions (N,) in (B, T).

        Captions are processed longest first and each step only runs the captions still going, so that a
        batch costs its real words, not B times the longest.
        """
        batch, length = captions.shape
        lengths = (captions != self.pad_id).sum(dim=1)  # (B,)
        order = lengths.argsort(descending=True)
        features, projected, hidden, cell = self._start(features[order])
        word_gates = self.word_to_gates(self.dropout(self.embedding(captions[order])))  # (B, T, 4H)
        steps = torch.arange(length, device=captions.device)
        running = lengths[order].unsqueeze(0) > steps.unsqueeze(1)  # (T, B)
        active_counts = [count for count in running.sum(dim=1).tolist() if count > 0]
        hidden_weights = self._hidden_weights()
        fused = self.fused_recurrence and not features.requires_grad  # it gives features no gradient
        if not fused or torch.is_autocast_enabled(features.device.type):
            hiddens, attention = self._recurrence_by_autograd(
                word_gates, features, projected, hidden, cell, hidden_weights, active_counts
            )
        else:
            hiddens, attention = AttentionLSTMRecurrence.apply(
                word_gates,
                features,
                projected,
                hidden,
                cell,
                *hidden_weights,
                self.attention.score.weight,
                self.attention.score.bias,
                self.context_to_gates.weight,
                active_counts,
            )  # (N, H), (N, R)
        step_of_word, rank_of_word = running.nonzero(as_tuple=True)  # step-major, as the packed rows
        positions = order[rank_of_word] * length + step_of_word  # (N,)
        return hiddens, attention, positions

    def _recurrence_by_autograd(
        self,
        word_gates: torch.Tensor,
        features: torch.Tensor,
        projected: torch.Tensor,
        hidden: torch.Tensor,
        cell: torch.Tensor,
        hidden_weights: tuple[torch.Tensor, torch.Tensor],
        active_counts: list[int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The recurrence of `AttentionLSTMRecurrence` written with `_step` and left to autograd: the
        reference the fused version is tested against, and the path for autocast or trainable features."""
        hiddens, attention = [], []
        for step, active in enumerate(active_counts):
            hidden, cell, weights = self._step(
                word_gates[:active, step],
                features[:active],
                projected[:active],
                hidden[:active],
                cell[:active],
                hidden_weights,
            )
            hiddens.append(hidden)
            attention.append(weights)
        return torch.cat(hiddens), torch.cat(attention)  # (N, H), (N, R)

    def forward(self, features: torch.Tensor, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: logits (B, T, V) of the word after each input word of `captions` (B, T), and
        the attention (B, T, R) used for each. Positions past a caption's end (`<pad>` inputs) get zero
        attention and the logits of a zero hidden state, which a loss ignoring `<pad>` never reads."""
        hiddens, attention, positions = self._teacher_forced(features, captions)
        logits = self.output(self.dropout(_unpack(hiddens, positions, captions.shape)))  # (B, T, V)
        return logits, _unpack(attention, positions, captions.shape)  # (B, T, V), (B, T, R)

    def cross_entropy(
        self, features: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, int, torch.Tensor]:
        """Mean cross-entropy of the words `targets` (B, T) that follow the real (non-`<pad>`) words of
        `inputs` (B, T), computed only there (no output-layer product for padding); the number of words
        scored; and the attention (B, T, R)."""
        hiddens, attention, positions = self._teacher_forced(features, inputs)
        word_targets = targets.flatten()[positions]  # (N,)
        logits = self.output(self.dropout(hiddens))  # (N, V)
        loss = F.cross_entropy(logits, word_targets, ignore_index=self.pad_id)
        return loss, int((word_targets != self.pad_id).sum()), _unpack(attention, positions, inputs.shape)

    def _start_generation(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`_start`, plus each region's share of the LSTM gates, were it attended alone (B, R, 4H).

        context @ W_c.T = weights @ (features @ W_c.T): with K beams of some 20 words, one product per image
        replaces K x 20 products per image, and the (B, R, D) features are never read again.
        """
        features, projected, hidden, cell = self._start(features)
        region_gates = F.linear(features, self.context_to_gates.weight)  # (B, R, 4H)
        return region_gates, projected, hidden, cell

    def _generation_step(
        self,
        tokens: torch.Tensor,
        region_gates: torch.Tensor,
        projected: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        hidden_weights: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """`_step` for N = B x K hypotheses (K adjacent rows per image) from their last tokens (N,):
        logits of the next word (N, V), attention (N, R) and the new (hidden, cell)."""
        hidden, cell = state
        query, gate, hidden_gates = _hidden_products(hidden, hidden_weights, projected.size(2))
        weights = self.attention.weights(projected, query)  # (N, R)
        batch, regions, _ = region_gates.shape
        attended = torch.bmm(weights.view(batch, -1, regions), region_gates).flatten(0, 1)  # (N, 4H)
        gates = self.word_to_gates(self.embedding(tokens)).add_(hidden_gates).addcmul_(torch.sigmoid(gate), attended)
        hidden, cell = _lstm_update(gates, cell)
        return self.output(hidden), weights, (hidden, cell)  # (N, V), (N, R)

    @torch.no_grad()
    def greedy(self, features: torch.Tensor, max_length: int) -> Generation:
        """The most likely word at each step, for at most `max_length` words plus `<eos>`."""
        region_gates, projected, hidden, cell = self._start_generation(features)
        state, hidden_weights = (hidden, cell), self._hidden_weights()
        tokens = torch.full((features.size(0),), self.bos_id, dtype=torch.long, device=features.device)
        finished = torch.zeros_like(tokens, dtype=torch.bool)
        generated, attention, log_probs = [], [], []
        for _ in range(max_length + 1):
            logits, weights, state = self._generation_step(tokens, region_gates, projected, state, hidden_weights)
            tokens = logits.argmax(dim=-1).masked_fill(finished, self.pad_id)  # (B,)
            chosen = logits.log_softmax(dim=-1).gather(1, tokens.unsqueeze(1)).squeeze(1)  # (B,)
            generated.append(tokens)
            attention.append(weights)
            log_probs.append(chosen.masked_fill(finished, 0.0))
            finished |= tokens == self.eos_id
            if finished.all():
                break
        return Generation(
            tokens=torch.stack(generated, dim=1),  # (B, L)
            attention=torch.stack(attention, dim=1),  # (B, L, R)
            log_probs=torch.stack(log_probs, dim=1),  # (B, L)
        )

    @torch.no_grad()
    def beam_search(self, features: torch.Tensor, beam_size: int, max_length: int) -> Generation:
        """Beam search batched over images: the B x K hypotheses advance together as one batch.

        Returns the highest-scoring (summed log-probability) hypothesis of each image.
        """
        batch_size, beams = features.size(0), beam_size
        region_gates, projected, hidden, cell = self._start_generation(features)  # beams share them
        hidden_weights = self._hidden_weights()
        state = (hidden.repeat_interleave(beams, dim=0), cell.repeat_interleave(beams, dim=0))  # (B*K, H)
        device = features.device
        scores = torch.full((batch_size * beams, 1), float("-inf"), device=device)
        scores[::beams] = 0.0  # all beams start identical: expand only the first
        tokens = torch.full((batch_size * beams,), self.bos_id, dtype=torch.long, device=device)
        finished = torch.zeros_like(tokens, dtype=torch.bool)
        # A finished hypothesis continues with <pad> at no cost, so it keeps its score.
        finished_row = torch.full((self.vocab_size,), float("-inf"), device=device)
        finished_row[self.pad_id] = 0.0
        offsets = (torch.arange(batch_size, device=device) * beams).unsqueeze(1)  # (B, 1)
        history = torch.empty((batch_size * beams, 0), dtype=torch.long, device=device)
        attention = torch.empty((batch_size * beams, 0, projected.size(1)), device=device)  # (B*K, L, R)
        word_log_probs = torch.empty((batch_size * beams, 0), device=device)  # (B*K, L)
        for _ in range(max_length + 1):
            logits, weights, state = self._generation_step(tokens, region_gates, projected, state, hidden_weights)
            log_probs = torch.where(finished.unsqueeze(1), finished_row, logits.log_softmax(dim=1))  # (B*K, V)
            candidates = log_probs + scores  # (B*K, V): score of each continuation
            scores, flat_index = candidates.view(batch_size, -1).topk(beams, dim=1)  # (B, K) over K x V each
            scores = scores.view(-1, 1)  # (B*K, 1)
            origin = (offsets + flat_index // self.vocab_size).view(-1)  # (B*K,) rows the beams come from
            tokens = (flat_index % self.vocab_size).view(-1)  # (B*K,)
            state = (state[0][origin], state[1][origin])
            history = torch.cat([history[origin], tokens.unsqueeze(1)], dim=1)  # (B*K, L)
            attention = torch.cat([attention[origin], weights[origin].unsqueeze(1)], dim=1)  # (B*K, L, R)
            chosen = log_probs[origin, tokens].unsqueeze(1)  # (B*K, 1)
            word_log_probs = torch.cat([word_log_probs[origin], chosen], dim=1)  # (B*K, L)
            finished = finished[origin] | (tokens == self.eos_id)
            # topk sorts the beams, so beam 0 of each image is its best hypothesis. Once it has ended, the
            # other beams can only lose score: the search is over for that image.
            if finished[::beams].all():
                break
        length = history.size(1)
        best_tokens = history.view(batch_size, beams, length)[:, 0]  # (B, L)
        best_attention = attention.view(batch_size, beams, length, -1)[:, 0]  # (B, L, R)
        best_log_probs = word_log_probs.view(batch_size, beams, length)[:, 0]  # (B, L)
        return Generation(best_tokens, best_attention, best_log_probs)

    def generate(self, features: torch.Tensor, max_length: int, beam_size: int = 1) -> Generation:
        """Greedy decoding for `beam_size` 1, beam search above."""
        if beam_size <= 1:
            return self.greedy(features, max_length)
        return self.beam_search(features, beam_size, max_length)
