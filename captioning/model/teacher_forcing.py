"""Teacher forcing, and the paths a cross-entropy training batch can take: packed and eager (the CPU, DDP), or
padded to fixed shapes and replayed from a CUDA graph (one GPU). Both run the decoder's one `step`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from captioning.errors import ConfigError
from captioning.model.cuda_graph import GraphedStep
from captioning.model.decoder import AttentionDecoder

# The training paths a user chooses (model.train_step): `auto` is the graph on one GPU, packed elsewhere.
TRAIN_STEPS = ("auto", "packed", "graph")
# `padded` is the graph's step run eagerly: the same fixed shapes, for testing that step where no GPU is.
PATHS = (*TRAIN_STEPS, "padded")


@dataclass
class TeacherForced:
    """The decoder's outputs for the N real (non-`<pad>`) input words of a batch (B, T), in step-major order:
    logits of the next word (N, V), attention (N, R), and each word's flat position (N,) in (B, T)."""

    logits: torch.Tensor
    attention: torch.Tensor
    positions: torch.Tensor

    def unpacked(self, name: str, shape: torch.Size) -> torch.Tensor:
        """`logits` or `attention` as (B, T, C), zero where `<pad>` was input."""
        packed = getattr(self, name)
        padded = packed.new_zeros(shape.numel(), packed.size(1)).index_copy(0, self.positions, packed)
        return padded.view(*shape, -1)  # (B, T, C)


def packed(decoder: AttentionDecoder, features: torch.Tensor, inputs: torch.Tensor) -> TeacherForced:
    """Teacher forcing of `inputs` (B, T) on raw features (B, R, D), each step running only the captions still
    going (longest first), so that a batch costs its real words, not B times the longest. Each weight of the
    step gets its gradient from one product over all steps (`BatchedWeightLinear`)."""
    batch, length = inputs.shape
    lengths = (inputs != decoder.pad_id).sum(dim=1)  # (B,)
    order = lengths.argsort(descending=True)
    normalised = decoder.normalise(features[order])  # (B, R, D)
    projected, (hidden, cell) = decoder.initial_state(normalised)
    step_inputs = decoder.step_inputs(normalised, projected, batched=True)
    word_gates = decoder.word_gates(inputs[order])  # (B, T, 4H)
    steps = torch.arange(length, device=inputs.device)
    running = lengths[order].unsqueeze(0) > steps.unsqueeze(1)  # (T, B)
    active_counts = [count for count in running.sum(dim=1).tolist() if count > 0]
    logits, attention = [], []
    for step, active in enumerate(active_counts):
        step_logits, weights, (hidden, cell) = decoder.step(
            word_gates[:active, step], (hidden[:active], cell[:active]), step_inputs.first(active)
        )
        logits.append(step_logits)
        attention.append(weights)
    step_of_word, rank_of_word = running.nonzero(as_tuple=True)  # step-major, as the packed rows
    positions = order[rank_of_word] * length + step_of_word  # (N,)
    return TeacherForced(torch.cat(logits), torch.cat(attention), positions)  # (N, V), (N, R), (N,)


def padded(
    decoder: AttentionDecoder, normalised: torch.Tensor, inputs: torch.Tensor, step: Callable | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher forcing with fixed shapes and no synchronisation with the host, for a captured step: every row
    of `inputs` (B, T) runs all T steps. Returns logits (B, T, V) and attention (B, T, R), zero where `<pad>`
    was input. `normalised` (B, R, D) are features already through `decoder.normalise`: a batch padded with
    blank rows (all-`<pad>` captions) must not count them in its statistics. `step`: the decoder's step
    compiled (plain products then, which the compiler can see into)."""
    projected, state = decoder.initial_state(normalised)
    step_inputs = decoder.step_inputs(normalised, projected, batched=step is None)
    word_gates = decoder.word_gates(inputs)  # (B, T, 4H)
    step = step or decoder.step
    logits, attention = [], []
    for position in range(inputs.size(1)):
        step_logits, weights, state = step(word_gates[:, position], state, step_inputs)
        logits.append(step_logits)
        attention.append(weights)
    attention = torch.stack(attention, dim=1) * (inputs != decoder.pad_id).unsqueeze(2)  # (B, T, R)
    return torch.stack(logits, dim=1), attention  # (B, T, V), (B, T, R)


def teacher_forced(
    decoder: AttentionDecoder, features: torch.Tensor, inputs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, T, V) of the word after each input word of `inputs` (B, T), and the attention (B, T, R) used
    for each; zero past a caption's end (`<pad>` inputs), which a loss ignoring `<pad>` never reads."""
    outputs = packed(decoder, features, inputs)
    return outputs.unpacked("logits", inputs.shape), outputs.unpacked("attention", inputs.shape)


Learn = Callable[[torch.Tensor, torch.Tensor, bool], tuple[torch.Tensor, ...]]


class TrainingPath:
    """Runs a training batch's forward, backward and clipping (`learn`) by one of `PATHS`.

    The padded paths pad each batch to `max_caption_length` words and to the number of captions of the
    largest batch so far, so that the last, partial batch keeps the same shapes; `graph` records one CUDA
    graph per shape and replays it. `compile_step` runs the padded step through `torch.compile`.
    """

    def __init__(self, kind: str, max_caption_length: int, pad_id: int, compile_step: bool = False) -> None:
        if kind not in PATHS:
            raise ConfigError(
                f"model.train_step={kind} is not one of {', '.join(TRAIN_STEPS)}: e.g. model.train_step=auto"
            )
        self.kind, self.length, self.pad_id, self.compile_step = kind, max_caption_length + 2, pad_id, compile_step
        self._rows = 0
        self._graphs: dict[tuple, GraphedStep] = {}
        self._compiled: Callable | None = None

    def resolve(self, on_gpu: bool, world_size: int) -> str:
        """The path a batch takes on this device and world size; ConfigError where the choice cannot work
        there, or where `compile_step` would be ignored (the packed path does not compile)."""
        kind = self.kind
        if kind == "auto":
            kind = "graph" if on_gpu and world_size == 1 else "packed"
        if kind == "graph" and not on_gpu:
            raise ConfigError("model.train_step=graph needs a CUDA device: use model.train_step=auto on this machine.")
        if self.compile_step and kind == "packed":
            raise ConfigError(
                "model.compile_step=true compiles the padded step that the CUDA graph replays, and this run trains "
                "by the packed path (on a CPU, or with several processes), which does not compile: leave "
                "model.compile_step out (or false)."
            )
        return kind

    def compiled_step(self, decoder: AttentionDecoder) -> Callable | None:
        """The decoder's step through `torch.compile` (once), if `compile_step`."""
        if self.compile_step and self._compiled is None:
            self._compiled = torch.compile(decoder.step, dynamic=False)
        return self._compiled

    def __call__(
        self, learn: Learn, decoder: AttentionDecoder, features: torch.Tensor, captions: torch.Tensor, kind: str
    ) -> tuple[torch.Tensor, ...]:
        """`learn` on features (B, R, D) and captions (B, T) by the path `kind` (see `resolve`), leaving the
        gradients in `.grad` for the optimizer; returns what `learn` returns, detached."""
        if kind == "packed":
            decoder.zero_grad(set_to_none=True)
            return learn(features, captions, False)
        rows = len(captions)
        if captions.size(1) > self.length:
            raise ValueError(f"Captions of {captions.size(1)} tokens exceed max_caption_length + 2 = {self.length}")
        self._rows = max(self._rows, rows)
        blank_rows = self._rows - rows
        # Normalised before the blank rows join, so that they do not count in the normalisation's statistics.
        features = F.pad(decoder.normalise(features), (0, 0, 0, 0, 0, blank_rows))
        captions = F.pad(captions, (0, self.length - captions.size(1), 0, blank_rows), value=self.pad_id)
        if kind == "padded":
            decoder.zero_grad(set_to_none=True)
            return learn(features, captions, True)
        key = (tuple(features.shape), features.dtype, torch.is_autocast_enabled("cuda"))
        if key not in self._graphs:
            self._graphs[key] = GraphedStep(functools.partial(learn, padded=True), decoder.parameters())
        return self._graphs[key](features, captions)
