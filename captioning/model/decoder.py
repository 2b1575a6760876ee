"""LSTM decoder with soft attention: teacher forcing for training, greedy and beam search for generation."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from captioning.model.attention import AdditiveAttention
from captioning.model.batched_linear import BatchedWeightLinear


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


def _lstm_update(gates: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LSTM from its gate pre-activations (N, 4H), in the order input, forget, candidate, output."""
    input_gate, forget_gate, candidate, output_gate = gates.chunk(4, dim=1)
    cell = torch.sigmoid(forget_gate) * cell + torch.sigmoid(input_gate) * torch.tanh(candidate)
    return torch.sigmoid(output_gate) * torch.tanh(cell), cell  # (N, H), (N, H)


Product = Callable[[torch.Tensor], torch.Tensor]


class AttentionDecoder(nn.Module):
    """Show, Attend and Tell decoder: at each word, attend to the regions and feed the gated context to an LSTM.

    The LSTM is written out (one product per input) so that the word half of its input product, which does
    not depend on the recurrence, is computed for all steps at once. `_step` holds the equations of one
    word; teacher forcing (packed or padded to fixed shapes) and generation all run it.
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
        self._compiled_step: Callable | None = None  # see `compile_step`

    def compile_step(self) -> None:
        """Run `padded_cross_entropy`'s steps through `torch.compile`: its kernels fuse each step's small
        operations, forward and backward, at the cost of compiling one step once (seconds)."""
        self._compiled_step = torch.compile(self._step, dynamic=False)

    # --- the equations ---------------------------------------------------------------------------------------
    def normalise(self, features: torch.Tensor) -> torch.Tensor:
        """Standardised region features (B, R, D); in training, with the statistics of this batch."""
        return self.feature_norm(features.flatten(0, 1)).view_as(features)

    def _initial_state(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """From normalised features (B, R, D): their attention projection (B, R, A) and the LSTM's first
        hidden state and cell (B, H), from the mean region."""
        mean_feature = features.mean(dim=1)  # (B, D)
        hidden = torch.tanh(self.init_hidden(mean_feature))  # (B, H)
        cell = torch.tanh(self.init_cell(mean_feature))  # (B, H)
        return self.attention.project_features(features), hidden, cell

    def _hidden_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The three products of the previous hidden state (attention query, context gate, LSTM gates)
        stacked into one matrix, so that a step multiplies h once: weight (A + 1 + 4H, H) and its bias."""
        weight = torch.cat(
            [self.attention.hidden_projection.weight, self.context_gate.weight, self.hidden_to_gates.weight]
        )
        attention_dim = self.attention.hidden_projection.out_features
        bias = F.pad(self.context_gate.bias, (attention_dim, self.hidden_to_gates.out_features))
        return weight, bias

    def _teacher_forcing_products(self, plain: bool = False) -> tuple[Product, Product]:
        """The step's two weight products (hidden state, context) for a teacher-forced pass: each weight's
        gradient is one product over all steps (`BatchedWeightLinear`); `plain` products instead for the
        compiled step, as the compiler cannot see into that tape."""
        if plain:
            return self._plain_hidden_product(), functools.partial(F.linear, weight=self.context_to_gates.weight)
        return BatchedWeightLinear(*self._hidden_weights()), BatchedWeightLinear(self.context_to_gates.weight)

    def _plain_hidden_product(self) -> Product:
        """h @ `_hidden_weights`, with autograd's own gradients (generation needs none)."""
        weight, bias = self._hidden_weights()
        return functools.partial(F.linear, weight=weight, bias=bias)

    def _step(
        self,
        word_gates: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        projected: torch.Tensor,
        regions: torch.Tensor,
        hidden_product: Product,
        region_product: Product | None,
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """One word for N = B x K rows (K adjacent rows per image) from the word's share of the LSTM gates
        (N, 4H): attend with the previous hidden state, gate the context, update the LSTM.

        `hidden_product` multiplies h by `_hidden_weights`. The context is read from `regions` (B, R, C):
        the features (C = D), then multiplied by the context's gate weights (`region_product`); or the
        features already multiplied by them (C = 4H, `region_product` None), as generation does once per image.
        Returns the new (hidden, cell) and the attention (N, R).
        """
        hidden, cell = state
        attention_dim = projected.size(2)
        query, gate, hidden_gates = hidden_product(hidden).split(
            [attention_dim, 1, word_gates.size(1)], dim=1
        )  # (N, A), (N, 1), (N, 4H)
        weights = self.attention.weights(projected, query)  # (N, R)
        context = self.attention.read(regions, weights)  # (N, C)
        if region_product is not None:
            context = region_product(context)  # (N, 4H)
        gates = torch.addcmul(word_gates + hidden_gates, torch.sigmoid(gate), context)  # (N, 4H)
        return _lstm_update(gates, cell), weights

    # --- teacher forcing -------------------------------------------------------------------------------------
    def _word_gates(self, captions: torch.Tensor) -> torch.Tensor:
        """Every input word's share of the LSTM gates (B, T, 4H), bias included, for all steps at once."""
        return self.word_to_gates(self.dropout(self.embedding(captions)))

    def _teacher_forced(
        self, features: torch.Tensor, captions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Hidden states (N, H) and attention (N, R) of the N real (non-`<pad>`) input words of `captions`
        (B, T), and their flat positions (N,) in (B, T).

        Captions are processed longest first and each step only runs the captions still going, so that a
        batch costs its real words, not B times the longest. Each weight of the step gets its gradient from
        one product over all steps (`BatchedWeightLinear`).
        """
        batch, length = captions.shape
        lengths = (captions != self.pad_id).sum(dim=1)  # (B,)
        order = lengths.argsort(descending=True)
        features = self.normalise(features[order])  # (B, R, D)
        projected, hidden, cell = self._initial_state(features)
        word_gates = self._word_gates(captions[order])  # (B, T, 4H)
        steps = torch.arange(length, device=captions.device)
        running = lengths[order].unsqueeze(0) > steps.unsqueeze(1)  # (T, B)
        active_counts = [count for count in running.sum(dim=1).tolist() if count > 0]
        hidden_product, region_product = self._teacher_forcing_products()
        hiddens, attention = [], []
        for step, active in enumerate(active_counts):
            (hidden, cell), weights = self._step(
                word_gates[:active, step],
                (hidden[:active], cell[:active]),
                projected[:active],
                features[:active],
                hidden_product,
                region_product,
            )
            hiddens.append(hidden)
            attention.append(weights)
        step_of_word, rank_of_word = running.nonzero(as_tuple=True)  # step-major, as the packed rows
        positions = order[rank_of_word] * length + step_of_word  # (N,)
        return torch.cat(hiddens), torch.cat(attention), positions  # (N, H), (N, R), (N,)

    def forward(self, features: torch.Tensor, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: logits (B, T, V) of the word after each input word of `captions` (B, T), and
        the attention (B, T, R) used for each. Positions past a caption's end (`<pad>` inputs) get zero
        attention and the logits of a zero hidden state, which a loss ignoring `<pad>` never reads."""
        hiddens, attention, positions = self._teacher_forced(features, captions)
        logits = self.output(self.dropout(_unpack(hiddens, positions, captions.shape)))  # (B, T, V)
        return logits, _unpack(attention, positions, captions.shape)  # (B, T, V), (B, T, R)

    def cross_entropy(
        self, features: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean cross-entropy of the words `targets` (B, T) that follow the real (non-`<pad>`) words of
        `inputs` (B, T), computed only there (no output-layer product for padding); the number of words
        scored (a 0-d tensor); and the attention (B, T, R)."""
        hiddens, attention, positions = self._teacher_forced(features, inputs)
        word_targets = targets.flatten()[positions]  # (N,)
        logits = self.output(self.dropout(hiddens))  # (N, V)
        loss = F.cross_entropy(logits, word_targets, ignore_index=self.pad_id)
        return loss, (word_targets != self.pad_id).sum(), _unpack(attention, positions, inputs.shape)

    def padded_cross_entropy(
        self, normalised: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`cross_entropy` with fixed shapes and no synchronisation with the host, for a captured step: every
        row of `inputs` (B, T) runs all T steps, and `<pad>` targets are masked out of the loss.

        `normalised` (B, R, D) are features already through `normalise`: a batch padded with blank rows
        (all-`<pad>` captions) must not count them in the normalisation's statistics.
        """
        projected, hidden, cell = self._initial_state(normalised)
        word_gates = self._word_gates(inputs)  # (B, T, 4H)
        step_function = self._compiled_step or self._step
        hidden_product, region_product = self._teacher_forcing_products(plain=self._compiled_step is not None)
        hiddens, attention = [], []
        for step in range(inputs.size(1)):
            (hidden, cell), weights = step_function(
                word_gates[:, step], (hidden, cell), projected, normalised, hidden_product, region_product
            )
            hiddens.append(hidden)
            attention.append(weights)
        logits = self.output(self.dropout(torch.stack(hiddens, dim=1)))  # (B, T, V)
        scored = targets != self.pad_id  # (B, T)
        words = scored.sum()
        loss_sum = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=self.pad_id, reduction="sum")
        attention = torch.stack(attention, dim=1) * (inputs != self.pad_id).unsqueeze(2)  # (B, T, R)
        return loss_sum / words.clamp(min=1), words, attention

    # --- generation ------------------------------------------------------------------------------------------
    def _start_generation(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`_initial_state`, plus each region's share of the LSTM gates, were it attended alone (B, R, 4H).

        context @ W_c.T = weights @ (features @ W_c.T): with K beams of some 20 words, one product per image
        replaces K x 20 products per image, and the (B, R, D) features are never read again.
        """
        features = self.normalise(features)
        projected, hidden, cell = self._initial_state(features)
        region_gates = F.linear(features, self.context_to_gates.weight)  # (B, R, 4H)
        return region_gates, projected, hidden, cell

    def _generation_step(
        self,
        tokens: torch.Tensor,
        region_gates: torch.Tensor,
        projected: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        hidden_product: Product,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """`_step` from the last tokens (N,) of N = B x K hypotheses: logits of the next word (N, V),
        attention (N, R) and the new (hidden, cell)."""
        word_gates = self.word_to_gates(self.embedding(tokens))  # (N, 4H)
        state, weights = self._step(word_gates, state, projected, region_gates, hidden_product, None)
        return self.output(state[0]), weights, state  # (N, V), (N, R)

    @torch.no_grad()
    def greedy(self, features: torch.Tensor, max_length: int) -> Generation:
        """The most likely word at each step, for at most `max_length` words plus `<eos>`."""
        region_gates, projected, hidden, cell = self._start_generation(features)
        state, hidden_product = (hidden, cell), self._plain_hidden_product()
        tokens = torch.full((features.size(0),), self.bos_id, dtype=torch.long, device=features.device)
        finished = torch.zeros_like(tokens, dtype=torch.bool)
        generated, attention, log_probs = [], [], []
        for _ in range(max_length + 1):
            logits, weights, state = self._generation_step(tokens, region_gates, projected, state, hidden_product)
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
    def beam_search(
        self, features: torch.Tensor, beam_size: int, max_length: int, length_penalty: float = 0.0
    ) -> Generation:
        """Beam search batched over images: the B x K hypotheses advance together as one batch.

        Hypotheses are ranked by their summed log-probability divided by length ** `length_penalty` (words,
        `<eos>` included; GNMT's alpha). With 0, a caption that ends at once can outscore every real one.
        Returns the highest-ranked hypothesis of each image.
        """
        batch_size, beams = features.size(0), beam_size
        region_gates, projected, hidden, cell = self._start_generation(features)  # beams share them
        hidden_product = self._plain_hidden_product()
        state = (hidden.repeat_interleave(beams, dim=0), cell.repeat_interleave(beams, dim=0))  # (B*K, H)
        device = features.device
        scores = torch.full((batch_size * beams, 1), float("-inf"), device=device, dtype=features.dtype)
        scores[::beams] = 0.0  # all beams start identical: expand only the first
        lengths = torch.zeros_like(scores)  # (B*K, 1): words so far, <eos> included
        longest = max_length + 1.0  # the length of a hypothesis that never ends
        tokens = torch.full((batch_size * beams,), self.bos_id, dtype=torch.long, device=device)
        finished = torch.zeros_like(tokens, dtype=torch.bool)
        # A finished hypothesis continues with <pad> at no cost, so it keeps its score and length.
        finished_row = torch.full((self.vocab_size,), float("-inf"), device=device)
        finished_row[self.pad_id] = 0.0
        offsets = (torch.arange(batch_size, device=device) * beams).unsqueeze(1)  # (B, 1)
        history = torch.empty((batch_size * beams, 0), dtype=torch.long, device=device)
        attention = torch.empty((batch_size * beams, 0, projected.size(1)), device=device)  # (B*K, L, R)
        word_log_probs = torch.empty((batch_size * beams, 0), device=device)  # (B*K, L)
        for _ in range(max_length + 1):
            logits, weights, state = self._generation_step(tokens, region_gates, projected, state, hidden_product)
            log_probs = torch.where(finished.unsqueeze(1), finished_row, logits.log_softmax(dim=1))  # (B*K, V)
            candidates = log_probs + scores  # (B*K, V): summed log-probability of each continuation
            candidate_lengths = lengths + (~finished).unsqueeze(1)  # (B*K, 1): every continuation of a row
            ranked = candidates / candidate_lengths**length_penalty  # (B*K, V)
            ranks, flat_index = ranked.view(batch_size, -1).topk(beams, dim=1)  # (B, K) over K x V each
            origin = (offsets + flat_index // self.vocab_size).view(-1)  # (B*K,) rows the beams come from
            tokens = (flat_index % self.vocab_size).view(-1)  # (B*K,)
            scores = candidates[origin, tokens].unsqueeze(1)  # (B*K, 1)
            lengths = candidate_lengths[origin]  # (B*K, 1)
            state = (state[0][origin], state[1][origin])
            history = torch.cat([history[origin], tokens.unsqueeze(1)], dim=1)  # (B*K, L)
            attention = torch.cat([attention[origin], weights[origin].unsqueeze(1)], dim=1)  # (B*K, L, R)
            chosen = log_probs[origin, tokens].unsqueeze(1)  # (B*K, 1)
            word_log_probs = torch.cat([word_log_probs[origin], chosen], dim=1)  # (B*K, L)
            finished = finished[origin] | (tokens == self.eos_id)
            # topk sorts the beams, so beam 0 of each image is its best hypothesis. A running hypothesis can only
            # lose log-probability, but its divisor changes with its length: at best it keeps its score up to the
            # largest divisor ahead (the longest length, for a penalty > 0). Once beam 0 has ended and no running
            # beam can overtake it even so, the search is over for that image (no penalty: once beam 0 has ended).
            ceiling = scores / ((lengths + 1) ** length_penalty).clamp(min=longest**length_penalty)  # (B*K, 1)
            ceiling = ceiling.masked_fill(finished.unsqueeze(1), float("-inf")).view(batch_size, beams).amax(dim=1)
            if (finished[::beams] & (ranks[:, 0] >= ceiling)).all():
                break
        length = history.size(1)
        best_tokens = history.view(batch_size, beams, length)[:, 0]  # (B, L)
        best_attention = attention.view(batch_size, beams, length, -1)[:, 0]  # (B, L, R)
        best_log_probs = word_log_probs.view(batch_size, beams, length)[:, 0]  # (B, L)
        return Generation(best_tokens, best_attention, best_log_probs)

    def generate(
        self, features: torch.Tensor, max_length: int, beam_size: int = 1, length_penalty: float = 0.0
    ) -> Generation:
        """Greedy decoding for `beam_size` 1 (the length penalty cannot change its choices), beam search above."""
        if beam_size <= 1:
            return self.greedy(features, max_length)
        return self.beam_search(features, beam_size, max_length, length_penalty)
