"""A linear map used at every step of a recurrence, whose weight gradient is one matrix product over all steps.

Autograd computes the weight gradient of `x_t @ W.T` at every step t: a product whose inner dimension is
the batch (some 32 rows), accumulated step by step. Here the backward pass of each step only keeps its
output gradient; once every step is done, the weight gradient is `G.T @ X` over the rows of all steps.
"""

from __future__ import annotations

import torch


class _Tape:
    """The inputs of every use of the weight, in order, and the output gradients the backward pass gives them."""

    def __init__(self) -> None:
        self.inputs: list[torch.Tensor] = []
        self.grads: dict[int, torch.Tensor] = {}


class _TapedLinear(torch.autograd.Function):
    """x @ weight.T + bias, with the gradient of x only; the output gradient is left on the tape."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, tape: _Tape) -> torch.Tensor:
        ctx.save_for_backward(weight)
        ctx.tape, ctx.index, ctx.input_dtype = tape, len(tape.inputs), x.dtype
        tape.inputs.append(x.detach())
        return torch.nn.functional.linear(x, weight, bias)  # under autocast, in its lower precision

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple:
        (weight,) = ctx.saved_tensors
        ctx.tape.grads[ctx.index] = grad_output
        # The weight and bias get no gradient here: `_Gather` computes it for all uses at once. The products
        # run in the precision of the output gradient (that of autocast, if on), as autograd's would.
        return (grad_output @ weight.to(grad_output.dtype)).to(ctx.input_dtype), None, None, None


class _Gather(torch.autograd.Function):
    """Identity on the weight and bias; its backward pass runs after every use's and computes their gradients."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, bias: torch.Tensor | None, tape: _Tape) -> tuple:
        ctx.tape, ctx.has_bias, ctx.dtype = tape, bias is not None, weight.dtype
        return weight.view_as(weight), (bias.view_as(bias) if bias is not None else None)

    @staticmethod
    def backward(ctx, *_unused_grads) -> tuple:
        tape = ctx.tape
        order = sorted(tape.grads)  # uses whose output reached the loss
        grads = torch.cat([tape.grads[index] for index in order])  # (N, out)
        inputs = torch.cat([tape.inputs[index].to(grads.dtype) for index in order])  # (N, in)
        tape.grads.clear()
        grad_bias = grads.sum(dim=0, dtype=ctx.dtype) if ctx.has_bias else None
        return (grads.t() @ inputs).to(ctx.dtype), grad_bias, None


class BatchedWeightLinear:
    """`F.linear(x, weight, bias)` for the steps of one forward pass, whose weight gradient is computed once."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.tape = _Tape()
        self.weight, self.bias = _Gather.apply(weight, bias, self.tape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _TapedLinear.apply(x, self.weight, self.bias, self.tape)
