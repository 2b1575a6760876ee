"""The teacher-forced attention-LSTM recurrence as one autograd function with a hand-written backward pass.

Autograd would record some twenty small operations per word and accumulate every weight gradient step by
step. Here the forward pass writes each step into preallocated packed buffers, and the backward pass runs
the recurrence in reverse with only what must be sequential: the weight gradients become a few large
matrix products over all words of the batch at once.

The equations are those of `AttentionDecoder._step`, which stays the reference (tests compare
the two). Captions are sorted longest first and step t runs the first `active_counts[t]` of them; row i of
step t is row i of the batch. Packed tensors hold the rows of step 0, then those of step 1, and so on.
"""

from __future__ import annotations

import torch


def _step_starts(active_counts: list[int]) -> list[int]:
    """First packed row of each step."""
    starts = [0]
    for active in active_counts[:-1]:
        starts.append(starts[-1] + active)
    return starts


class AttentionLSTMRecurrence(torch.autograd.Function):
    """Hidden states (N, H) and attention weights (N, R) of every word, packed step after step."""

    @staticmethod
    def forward(
        ctx,
        word_gates: torch.Tensor,  # (B, T, 4H): the word's share of the LSTM gates, bias included
        features: torch.Tensor,  # (B, R, D): normalised regions; no gradient flows to them
        projected: torch.Tensor,  # (B, R, A): attention projection of the regions
        hidden: torch.Tensor,  # (B, H): initial state
        cell: torch.Tensor,  # (B, H)
        hidden_weight: torch.Tensor,  # (A + 1 + 4H, H): attention query, context gate, LSTM gates
        hidden_bias: torch.Tensor,  # (A + 1 + 4H,)
        score_weight: torch.Tensor,  # (1, A)
        score_bias: torch.Tensor,  # (1,)
        context_weight: torch.Tensor,  # (4H, D)
        active_counts: list[int],  # captions still going at each step: non-increasing, no zeros
    ) -> tuple[torch.Tensor, torch.Tensor]:
        regions, attention_dim = projected.shape[1:]
        hidden_dim, feature_dim = hidden.size(1), features.size(2)
        total = sum(active_counts)
        new = hidden.new_empty
        hiddens, cells, tanh_cells = new(total, hidden_dim), new(total, hidden_dim), new(total, hidden_dim)
        gate_values = new(total, 4 * hidden_dim)  # sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)
        scores_tanh = []  # per step, tanh(projected + query) (n, R, A): steps of this size reuse freed memory
        weights = new(total, regions)
        contexts, gated = new(total, feature_dim), new(total, feature_dim)  # before and after the gate
        context_gate = new(total, 1)  # sigmoid(beta)
        score_vector = score_weight.view(attention_dim)
        hidden_weight_t, context_weight_t = hidden_weight.t(), context_weight.t()
        candidate_columns = slice(2 * hidden_dim, 3 * hidden_dim)

        starts = _step_starts(active_counts)
        for step, (active, start) in enumerate(zip(active_counts, starts)):
            rows = slice(start, start + active)
            if step == 0:
                hidden_before, cell_before = hidden[:active], cell[:active]
            else:
                before = slice(starts[step - 1], starts[step - 1] + active)  # the same captions, one step earlier
                hidden_before, cell_before = hiddens[before], cells[before]
            from_hidden = torch.addmm(hidden_bias, hidden_before, hidden_weight_t)  # (n, A + 1 + 4H)
            query = from_hidden[:, :attention_dim].unsqueeze(1)  # (n, 1, A)
            step_tanh = torch.add(projected[:active], query).tanh_()  # (n, R, A)
            scores_tanh.append(step_tanh)
            scores = torch.matmul(step_tanh, score_vector).add_(score_bias)  # (n, R)
            step_weights = torch.softmax(scores, dim=1, out=weights[rows])
            torch.bmm(step_weights.unsqueeze(1), features[:active], out=contexts[rows].unsqueeze(1))  # (n, 1, D)
            gate = torch.sigmoid(from_hidden[:, attention_dim : attention_dim + 1], out=context_gate[rows])
            torch.mul(contexts[rows], gate, out=gated[rows])  # (n, D): the gated context of the paper
            gates = from_hidden[:, attention_dim + 1 :].add(word_gates[:active, step])  # (n, 4H)
            gates.addmm_(gated[rows], context_weight_t)
            values = torch.sigmoid(gates, out=gate_values[rows])
            torch.tanh(gates[:, candidate_columns], out=values[:, candidate_columns])
            input_gate, forget_gate, candidate, output_gate = values.chunk(4, dim=1)
            torch.mul(forget_gate, cell_before, out=cells[rows]).addcmul_(input_gate, candidate)
            torch.tanh(cells[rows], out=tanh_cells[rows])
            torch.mul(output_gate, tanh_cells[rows], out=hiddens[rows])

        ctx.active_counts, ctx.scores_tanh = active_counts, scores_tanh
        ctx.save_for_backward(
            word_gates, features, projected, hidden, cell, hidden_weight, score_weight, context_weight,
            hiddens, cells, tanh_cells, gate_values, weights, contexts, gated, context_gate,
        )  # fmt: skip
        return hiddens, weights

    @staticmethod
    def backward(ctx, grad_hiddens: torch.Tensor | None, grad_weights: torch.Tensor | None) -> tuple:
        (
            word_gates, features, projected, hidden, cell, hidden_weight, score_weight, context_weight,
            hiddens, cells, tanh_cells, gate_values, weights, contexts, gated, context_gate,
        ) = ctx.saved_tensors  # fmt: skip
        active_counts = ctx.active_counts
        starts = _step_starts(active_counts)
        attention_dim = projected.size(2)
        score_vector = score_weight.view(attention_dim)

        grad_hidden_carry = torch.zeros_like(hidden)  # (B, H): dL/dh of the last step run, from the steps after
        grad_cell_carry = torch.zeros_like(cell)  # (B, H)
        grad_word_gates = torch.zeros_like(word_gates)  # (B, T, 4H)
        grad_projected = torch.zeros_like(projected)  # (B, R, A)
        grad_from_hidden = hidden.new_empty(hiddens.size(0), hidden_weight.size(0))  # (N, A + 1 + 4H)
        grad_score_vector = torch.zeros_like(score_vector)
        grad_score_bias = hidden.new_zeros(1)

        for step in reversed(range(len(active_counts))):
            active, start = active_counts[step], starts[step]
            rows = slice(start, start + active)
            if step == 0:
                cell_before = cell[:active]
            else:
                cell_before = cells[starts[step - 1] : starts[step - 1] + active]
            grad_hidden = grad_hidden_carry[:active]
            if grad_hiddens is not None:
                grad_hidden = grad_hidden + grad_hiddens[rows]
            input_gate, forget_gate, candidate, output_gate = gate_values[rows].chunk(4, dim=1)
            tanh_cell = tanh_cells[rows]
            # h = o * tanh(c); c = f * c_before + i * g
            grad_cell = torch.ops.aten.tanh_backward(grad_hidden * output_gate, tanh_cell)
            grad_cell += grad_cell_carry[:active]
            grad_gates = grad_from_hidden[rows, attention_dim + 1 :]  # (n, 4H), a view
            g_input, g_forget, g_candidate, g_output = grad_gates.chunk(4, dim=1)
            torch.ops.aten.sigmoid_backward(grad_cell * candidate, input_gate, grad_input=g_input)
            torch.ops.aten.sigmoid_backward(grad_cell * cell_before, forget_gate, grad_input=g_forget)
            torch.ops.aten.tanh_backward(grad_cell * input_gate, candidate, grad_input=g_candidate)
            torch.ops.aten.sigmoid_backward(grad_hidden * tanh_cell, output_gate, grad_input=g_output)
            torch.mul(grad_cell, forget_gate, out=grad_cell_carry[:active])
            grad_word_gates[:active, step] = grad_gates

            # gates += gated @ context_weight.T, gated = sigmoid(beta) * context, context = weights @ features
            grad_gated = grad_gates @ context_weight  # (n, D)
            gate = context_gate[rows]  # (n, 1)
            grad_gate = (grad_gated * contexts[rows]).sum(dim=1, keepdim=True)
            grad_beta = grad_from_hidden[rows, attention_dim : attention_dim + 1]
            torch.ops.aten.sigmoid_backward(grad_gate, gate, grad_input=grad_beta)
            grad_context = grad_gated.mul_(gate)  # (n, D)
            step_weights = weights[rows]
            grad_step_weights = torch.bmm(grad_context.unsqueeze(1), features[:active].transpose(1, 2)).squeeze(1)
            if grad_weights is not None:
                grad_step_weights += grad_weights[rows]

            # weights = softmax(tanh(projected + query) @ v + b)  # (n, R)
            grad_scores = torch.ops.aten._softmax_backward_data(grad_step_weights, step_weights, 1, step_weights.dtype)
            grad_score_bias += grad_scores.sum()
            step_tanh = ctx.scores_tanh[step]  # (n, R, A)
            grad_score_vector.addmv_(step_tanh.view(-1, attention_dim).t(), grad_scores.view(-1))
            grad_before_tanh = torch.ops.aten.tanh_backward(grad_scores.unsqueeze(2) * score_vector, step_tanh)
            grad_projected[:active] += grad_before_tanh
            torch.sum(grad_before_tanh, dim=1, out=grad_from_hidden[rows, :attention_dim])  # (n, A)
            torch.mm(grad_from_hidden[rows], hidden_weight, out=grad_hidden_carry[:active])  # (n, H)

        # Weight gradients: one product over every word of the batch.
        hidden_before_all = torch.cat(
            [hidden[: active_counts[0]]]
            + [hiddens[starts[step - 1] : starts[step - 1] + active_counts[step]] for step in range(1, len(starts))]
        )  # (N, H)
        grad_hidden_weight = grad_from_hidden.t() @ hidden_before_all  # (A + 1 + 4H, H)
        grad_hidden_bias = grad_from_hidden.sum(dim=0)
        grad_context_weight = grad_from_hidden[:, attention_dim + 1 :].t() @ gated  # (4H, D)
        return (
            grad_word_gates,
            None,
            grad_projected,
            grad_hidden_carry,
            grad_cell_carry,
            grad_hidden_weight,
            grad_hidden_bias,
            grad_score_vector.view_as(score_weight),
            grad_score_bias,
            grad_context_weight,
            None,
        )
