"""A training step recorded once as a CUDA graph and replayed for every batch.

A step of this model on a batch of 32 is some 1,500 small kernels: launching them costs more than running
them. A CUDA graph launches them all at once. The step must have fixed shapes and no synchronisation with
the host; its inputs are copied into static buffers, and its outputs are those of the recorded run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


class GraphedStep:
    """`step(*inputs)` (forward, backward and gradient clipping, leaving the gradients in `.grad` for the
    optimizer), run eagerly for the first `warmup` calls and then replayed from a CUDA graph.

    The warm-up calls are real steps on real batches, on a side stream as capture requires; the recording
    happens on the next call, whose batch is then replayed. Gradients are assigned, not accumulated.
    """

    def __init__(
        self, step: Callable[..., tuple[torch.Tensor, ...]], parameters: Iterable[torch.nn.Parameter], warmup: int = 3
    ) -> None:
        self.step = step
        self.parameters = [parameter for parameter in parameters if parameter.requires_grad]
        self.warmup = warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_inputs: tuple[torch.Tensor, ...] = ()
        self.static_outputs: tuple[torch.Tensor, ...] = ()
        self.gradients: list[torch.Tensor] = []  # the recorded backward's, which every replay overwrites

    def _clear_gradients(self) -> None:
        for parameter in self.parameters:
            parameter.grad = None

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.calls += 1
        if self.calls <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._clear_gradients()
                outputs = self.step(*inputs)
            torch.cuda.current_stream().wait_stream(side)
            return tuple(output.detach() for output in outputs)
        if self.graph is None:
            self.static_inputs = tuple(tensor.clone() for tensor in inputs)
            self._clear_gradients()  # the recorded backward allocates them, in the graph's own memory
            self.graph = torch.cuda.CUDAGraph()
            # thread_local: DataLoader threads (pinning the next batch) may use CUDA meanwhile
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                self.static_outputs = tuple(output.detach() for output in self.step(*self.static_inputs))
            self.gradients = [parameter.grad for parameter in self.parameters]
        else:
            for static, tensor in zip(self.static_inputs, inputs):
                static.copy_(tensor, non_blocking=True)
        # Lightning sets every .grad to None before validation (zero_grad): hand the graph's back each time.
        for parameter, gradient in zip(self.parameters, self.gradients):
            parameter.grad = gradient
        self.graph.replay()
        return tuple(output.clone() for output in self.static_outputs)  # the next replay overwrites them
