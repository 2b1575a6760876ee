"""LSTM decoder with soft attention. Its one step goes from a word to the next word's logits; teacher forcing
(captioning.model.teacher_forcing), greedy decoding, beam search and sampling all run it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from captioning.model.attention import AdditiveAttention
from captioning.model.batched_linear import BatchedWeightLinear

Product = Callable[[torch.Tensor], torch.Tensor]
State = tuple[torch.Tensor, torch.Tensor]  # the LSTM's hidden state and cell, (N, H) each


@dataclass
class Generation:
    """Generated ids (B, L), `<eos>` and `<pad>` included, the attention of every step (B, L, R), and the
    log-probability of each generated word given the words before it (B, L), 0 for the `<pad>` after `<eos>`;
    sampling also gives the entropy of each step's distribution (B, L), 0 after `<eos>`."""

    tokens: torch.Tensor
    attention: torch.Tensor
    log_probs: torch.Tensor
    entropy: torch.Tensor | None = None


@dataclass
class StepInputs:
    """What every step of one pass reads besides its word and state: the images' projected features (B, R, A),
    the regions its context is read from (B, R, C), and the products of the weights used at every step.

    The regions are the features (C = D), whose context `region_product` multiplies by the context's gate
    weights; or, in generation, the features already multiplied by them (C = 4H, `region_product` None): with
    K hypotheses of some 20 words per image, one product per image replaces K x 20 of them.
    """

    projected: torch.Tensor
    regions: torch.Tensor
    hidden_product: Product  # h @ the stacked hidden weights (attention query, context gate, LSTM gates)
    region_product: Product | None
    output_product: Product  # h @ the output layer: the logits

    def first(self, rows: int) -> StepInputs:
        """The inputs of the first `rows` images (teacher forcing runs only the captions still going)."""
        return replace(self, projected=self.projected[:rows], regions=self.regions[:rows])


def _plain_linear(weight: torch.Tensor, bias: torch.Tensor | None = None) -> Product:
    """x @ weight.T + bias, with autograd's own gradients."""
    return functools.partial(F.linear, weight=weight, bias=bias)


def _draw(log_probs: torch.Tensor) -> torch.Tensor:
    """One word (N,) drawn from each row's distribution (N, V) by inverting its cumulative sum: as
    `torch.multinomial`, whose exponential draws over the whole vocabulary cost far more on a CPU. A word of
    probability 0 is never drawn (the draw lies in (0, total])."""
    cumulative = log_probs.exp().cumsum(dim=1)  # (N, V)
    draw = (1.0 - torch.rand_like(cumulative[:, :1])) * cumulative[:, -1:]  # (N, 1) in (0, total]
    return torch.searchsorted(cumulative, draw).squeeze(1).clamp(max=log_probs.size(1) - 1)


def _lstm_update(gates: torch.Tensor, cell: torch.Tensor) -> State:
    """LSTM from its gate pre-activations (N, 4H), in the order input, forget, candidate, output."""
    input_gate, forget_gate, candidate, output_gate = gates.chunk(4, dim=1)
    cell = torch.sigmoid(forget_gate) * cell + torch.sigmoid(input_gate) * torch.tanh(candidate)
    return torch.sigmoid(output_gate) * torch.tanh(cell), cell  # (N, H), (N, H)


class AttentionDecoder(nn.Module):
    """Show, Attend and Tell decoder: at each word, attend to the regions and feed the gated context to an LSTM.

    The LSTM is written out (one product per input) so that the word half of its input product, which does
    not depend on the recurrence, can be computed for all words at once (`word_gates`). `step` holds the
    equations of one word.
    """

    def __init__(
        self,
        vocab_size: int,
        feature_dim: int = 2048,
        *,
        embed_dim: int = 256,
        hidden_dim: int = 256,
        attention_dim: int = 256,
        dropout: float = 0.5,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        unk_id: int = 3,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = pad_id, bos_id, eos_id, unk_id
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

    # --- the equations ---------------------------------------------------------------------------------------
    def normalise(self, features: torch.Tensor) -> torch.Tensor:
        """Standardised region features (B, R, D); in training, with the statistics of this batch."""
        return self.feature_norm(features.flatten(0, 1)).view_as(features)

    def initial_state(self, normalised: torch.Tensor) -> tuple[torch.Tensor, State]:
        """From normalised features (B, R, D): their attention projection (B, R, A) and the LSTM's first
        hidden state and cell (B, H), from the mean region."""
        mean_feature = normalised.mean(dim=1)  # (B, D)
        hidden = torch.tanh(self.init_hidden(mean_feature))  # (B, H)
        cell = torch.tanh(self.init_cell(mean_feature))  # (B, H)
        return self.attention.project_features(normalised), (hidden, cell)

    def word_gates(self, words: torch.Tensor) -> torch.Tensor:
        """Each word's share of the LSTM gates (..., 4H), bias included: for all the words of teacher forcing at
        once (B, T), or for the last words of the hypotheses in generation (N,)."""
        return self.word_to_gates(self.dropout(self.embedding(words)))

    def _hidden_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The three products of the previous hidden state (attention query, context gate, LSTM gates)
        stacked into one matrix, so that a step multiplies h once: weight (A + 1 + 4H, H) and its bias."""
        weight = torch.cat(
            [self.attention.hidden_projection.weight, self.context_gate.weight, self.hidden_to_gates.weight]
        )
        attention_dim = self.attention.hidden_projection.out_features
        bias = F.pad(self.context_gate.bias, (attention_dim, self.hidden_to_gates.out_features))
        return weight, bias

    def step_inputs(self, normalised: torch.Tensor, projected: torch.Tensor, batched: bool) -> StepInputs:
        """The inputs of every step of one teacher-forced pass over normalised features (B, R, D). `batched`:
        each weight's gradient is one product over all steps (`BatchedWeightLinear`), as the eager training
        step wants; else plain products, which a compiler can see into."""
        linear = BatchedWeightLinear if batched else _plain_linear
        return StepInputs(
            projected,
            normalised,
            linear(*self._hidden_weights()),
            linear(self.context_to_gates.weight),
            linear(self.output.weight, self.output.bias),
        )

    def step(
        self, word_gates: torch.Tensor, state: State, inputs: StepInputs
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """One word for N = B x K rows (K adjacent rows per image): from the word's share of the LSTM gates
        (N, 4H) and the previous state, attend, gate the context, update the LSTM and score the next word.
        Returns the logits of the next word (N, V), the attention (N, R) and the new (hidden, cell)."""
        hidden, cell = state
        attention_dim = inputs.projected.size(2)
        query, gate, hidden_gates = inputs.hidden_product(hidden).split(
            [attention_dim, 1, word_gates.size(1)], dim=1
        )  # (N, A), (N, 1), (N, 4H)
        weights = self.attention(inputs.projected, query)  # (N, R)
        context = self.attention.read(inputs.regions, weights)  # (N, C)
        if inputs.region_product is not None:
            context = inputs.region_product(context)  # (N, 4H)
        gates = torch.addcmul(word_gates + hidden_gates, torch.sigmoid(gate), context)  # (N, 4H)
        hidden, cell = _lstm_update(gates, cell)
        return inputs.output_product(self.dropout(hidden)), weights, (hidden, cell)  # (N, V), (N, R)

    # --- generation ------------------------------------------------------------------------------------------
    def _start_generation(self, features: torch.Tensor, rows_per_image: int) -> tuple[StepInputs, State]:
        """The step inputs of generation from raw features (B, R, D), with the context's gate weights applied
        to the regions once per image (B, R, 4H), and the first state repeated for `rows_per_image` adjacent
        hypotheses of each image (B x K, H). Where gradients are wanted (sampling for self-critical training),
        the weights used at every word get theirs from one product over all the words."""
        normalised = self.normalise(features)
        projected, (hidden, cell) = self.initial_state(normalised)
        region_gates = F.linear(normalised, self.context_to_gates.weight)  # (B, R, 4H)
        linear = BatchedWeightLinear if torch.is_grad_enabled() else _plain_linear
        hidden_product, output_product = linear(*self._hidden_weights()), linear(self.output.weight, self.output.bias)
        inputs = StepInputs(projected, region_gates, hidden_product, None, output_product)
        state = (hidden.repeat_interleave(rows_per_image, dim=0), cell.repeat_interleave(rows_per_image, dim=0))
        return inputs, state

    def _banned(self, logits: torch.Tensor, history: torch.Tensor | None, allow_unk: bool) -> torch.Tensor:
        """`logits` (N, V) with the words that may not come next at -inf: `<pad>` and `<bos>`, never real words;
        `<unk>` unless `allow_unk`; and, given the words so far (`history`, N x L), any word that would repeat a
        trigram of the hypothesis."""
        banned_ids = [self.pad_id, self.bos_id] + ([] if allow_unk else [self.unk_id])
        logits = logits.index_fill(1, torch.tensor(banned_ids, device=logits.device), float("-inf"))
        if history is not None and history.size(1) >= 3:
            # A trigram (a, b, c) already seen with (a, b) = the last two words bans c now.
            repeats = (history[:, :-2] == history[:, -2:-1]) & (history[:, 1:-1] == history[:, -1:])  # (N, L-2)
            third = history[:, 2:].masked_fill(~repeats, self.pad_id)  # (N, L-2)
            banned = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, third, True)
            banned[:, self.pad_id] = False
            logits = logits.masked_fill(banned, float("-inf"))
        return logits

    @torch.no_grad()
    def greedy(
        self, features: torch.Tensor, max_length: int, allow_unk: bool = False, block_trigrams: bool = False
    ) -> Generation:
        """The most likely word at each step, for at most `max_length` words plus `<eos>`."""
        return self._word_by_word(features, 1, max_length, None, allow_unk, block_trigrams)

    def sample(
        self,
        features: torch.Tensor,
        samples: int,
        max_length: int,
        temperature: float = 1.0,
        allow_unk: bool = False,
    ) -> Generation:
        """`samples` captions of each image (adjacent rows: B x S), each word drawn from the softmax of the
        logits / `temperature`, with the log-probability of each drawn word under that distribution and its
        entropy. Gradients flow into the log-probabilities (self-critical training); the draws take none."""
        return self._word_by_word(features, samples, max_length, temperature, allow_unk, False)

    def _word_by_word(
        self,
        features: torch.Tensor,
        rows_per_image: int,
        max_length: int,
        temperature: float | None,
        allow_unk: bool,
        block_trigrams: bool,
    ) -> Generation:
        """One caption per row (B x K rows, K adjacent per image), a word at a time until every row has ended
        or `max_length` words and `<eos>` are out: the most likely word (`temperature` None) or one drawn at
        `temperature`. Rows that have ended continue with `<pad>`, at log-probability and entropy 0."""
        inputs, state = self._start_generation(features, rows_per_image)
        tokens = torch.full((len(state[0]),), self.bos_id, dtype=torch.long, device=features.device)
        finished = torch.zeros_like(tokens, dtype=torch.bool)
        generated, attention, log_probs, entropies = [], [], [], []
        for _ in range(max_length + 1):
            logits, weights, state = self.step(self.word_gates(tokens), state, inputs)
            history = torch.stack(generated, dim=1) if block_trigrams and generated else None
            logits = logits if temperature is None else logits / temperature
            log_prob = self._banned(logits, history, allow_unk).log_softmax(dim=-1)  # (N, V)
            if temperature is None:
                chosen = log_prob.argmax(dim=-1)  # (N,)
            else:
                chosen = _draw(log_prob.detach())  # (N,)
            with torch.no_grad():  # logged, not trained
                probabilities = log_prob.exp()
                entropy = -(probabilities * log_prob.masked_fill(probabilities == 0, 0.0)).sum(dim=1)  # (N,)
            tokens = chosen.masked_fill(finished, self.pad_id)
            generated.append(tokens)
            attention.append(weights)
            log_probs.append(log_prob.gather(1, chosen.unsqueeze(1)).squeeze(1).masked_fill(finished, 0.0))
            entropies.append(entropy.masked_fill(finished, 0.0))
            finished = finished | (tokens == self.eos_id)
            if finished.all():
                break
        return Generation(
            tokens=torch.stack(generated, dim=1),  # (N, L)
            attention=torch.stack(attention, dim=1),  # (N, L, R)
            log_probs=torch.stack(log_probs, dim=1),  # (N, L)
            entropy=torch.stack(entropies, dim=1),  # (N, L)
        )

    @torch.no_grad()
    def beam_search(
        self,
        features: torch.Tensor,
        beam_size: int,
        max_length: int,
        length_penalty: float = 0.0,
        allow_unk: bool = False,
        block_trigrams: bool = False,
    ) -> Generation:
        """Beam search batched over images: the B x K hypotheses advance together as one batch.

        Hypotheses are ranked by their summed log-probability divided by length ** `length_penalty` (words,
        `<eos>` included; GNMT's alpha). With 0, a caption that ends at once can outscore every real one.
        Returns the highest-ranked hypothesis of each image.
        """
        batch_size, beams = features.size(0), beam_size
        inputs, state = self._start_generation(features, beams)  # beams share each image's inputs
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
        attention = torch.empty((batch_size * beams, 0, inputs.projected.size(1)), device=device)  # (B*K, L, R)
        word_log_probs = torch.empty((batch_size * beams, 0), device=device)  # (B*K, L)
        for _ in range(max_length + 1):
            logits, weights, state = self.step(self.word_gates(tokens), state, inputs)
            logits = self._banned(logits, history if block_trigrams else None, allow_unk)
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
        self,
        features: torch.Tensor,
        max_length: int,
        beam_size: int = 1,
        length_penalty: float = 0.0,
        allow_unk: bool = False,
        block_trigrams: bool = False,
    ) -> Generation:
        """Greedy decoding for `beam_size` 1 (the length penalty cannot change its choices), beam search above."""
        if beam_size <= 1:
            return self.greedy(features, max_length, allow_unk, block_trigrams)
        return self.beam_search(features, beam_size, max_length, length_penalty, allow_unk, block_trigrams)
