"""Training-step throughput of the decoder on cached features: forward + backward + Adam step.

python benchmarks/train_step.py --batch-size 32 --vocab-size 7500 --caption-len 20 [--reference] [--profile]

Times the training path of the LightningModule (`AttentionDecoder.cross_entropy`). Prints captions per
second and the useful GFLOP/s (the matrix products the model needs, counted once per caption) against this
machine's measured fp32 matrix-product rate. `--reference` also times the same model with its recurrence
left to autograd, and a straightforward per-step loop (as the well-known tutorial writes it: the region
features re-projected at every step, the word and output products inside the loop), and checks that all
three give the same loss on the same weights. `--profile` reports the time the step spends in matrix
products alone, and the roofline fraction that time alone would give: the bound on what removing every
other cost could reach.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file (python benchmarks/x.py): make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import time

import torch
import torch.nn.functional as F

from benchmarks.common import gemm_gflops, report
from captioning.model.decoder import AttentionDecoder


def reference_forward(decoder: AttentionDecoder, features: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
    """The same model computed step by step, nothing hoisted out of the time loop: logits (B, T, V)."""
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


def useful_flops_per_caption(
    steps: int, regions: int, feature_dim: int, embed: int, hidden: int, attention: int, vocab: int
) -> int:
    """FLOPs of forward + backward (3x the forward's matrix products) that one caption needs."""
    once = regions * feature_dim * attention + 2 * feature_dim * hidden  # region projection, initial state
    per_step = (
        hidden * attention  # query
        + regions * attention  # scores
        + regions * feature_dim  # context
        + hidden  # gate
        + (embed + feature_dim + hidden) * 4 * hidden  # LSTM gates
        + hidden * vocab  # output layer
    )
    return 3 * 2 * (once + steps * per_step)


MATRIX_PRODUCTS = {"aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::addmv_", "aten::mv"}


def matrix_product_milliseconds(step, repeats: int) -> float:
    """Time per step spent inside matrix products (profiler self time): what the step costs at the least,
    with everything else (elementwise work, Python, autograd) taken away."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        for _ in range(repeats):
            step()
    events = profiler.key_averages()
    return sum(event.self_cpu_time_total for event in events if event.key in MATRIX_PRODUCTS) / repeats / 1e3


def time_training(step, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--vocab-size", type=int, default=7500)
    parser.add_argument("--caption-len", type=int, default=20, help="words per caption (+ <eos>)")
    parser.add_argument("--embed-dim", type=int, default=256)
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--attention-dim", type=int, default=256)
    parser.add_argument("--regions", type=int, default=49)
    parser.add_argument("--feature-dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--reference", action="store_true", help="also time the autograd and per-step loops")
    parser.add_argument(
        "--profile", action="store_true", help="also report the time spent in matrix products (torch profiler)"
    )
    args = parser.parse_args()

    torch.manual_seed(0)
    decoder = AttentionDecoder(
        args.vocab_size, args.feature_dim, args.embed_dim, args.hidden_dim, args.attention_dim, dropout=0.5
    )
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-3, fused=True)  # as the LightningModule
    features = torch.randn(args.batch_size, args.regions, args.feature_dim).half().float() * 30
    captions = torch.randint(4, args.vocab_size, (args.batch_size, args.caption_len + 2))
    captions[:, 0], captions[:, -1] = decoder.bos_id, decoder.eos_id
    inputs, targets = captions[:, :-1], captions[:, 1:]

    def step(forward) -> None:
        loss = forward(decoder, features, inputs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def fast_loss(model, feats, caps):
        return model.cross_entropy(feats, caps, targets)[0]

    def reference_loss(model, feats, caps):
        logits = reference_forward(model, feats, caps)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=model.pad_id)

    flops = useful_flops_per_caption(
        inputs.size(1),
        args.regions,
        args.feature_dim,
        args.embed_dim,
        args.hidden_dim,
        args.attention_dim,
        args.vocab_size,
    )
    gemm = gemm_gflops()
    seconds = time_training(lambda: step(fast_loss), args.repeats, args.warmup)
    figures = {
        "captions_per_s": args.batch_size / seconds,
        "step_ms": seconds * 1e3,
        "useful_gflop_per_caption": flops / 1e9,
        "useful_gflops": flops * args.batch_size / seconds / 1e9,
        "gemm_gflops": gemm,
        "roofline_fraction": flops * args.batch_size / seconds / 1e9 / gemm,
    }
    if args.profile:
        product_ms = matrix_product_milliseconds(lambda: step(fast_loss), 5)
        figures.update(
            matrix_product_ms=product_ms,
            matrix_product_share=product_ms / figures["step_ms"],
            roofline_fraction_of_matrix_products=flops * args.batch_size / (product_ms / 1e3) / 1e9 / gemm,
        )
    if args.reference:
        decoder.eval()  # no dropout: the paths must give the same loss on the same weights
        with torch.no_grad():
            losses = {"loss_fast": fast_loss(decoder, features, inputs).item()}
            decoder.fused_recurrence = False
            losses["loss_autograd"] = fast_loss(decoder, features, inputs).item()
            losses["loss_reference"] = reference_loss(decoder, features, inputs).item()
        decoder.train()
        autograd_seconds = time_training(lambda: step(fast_loss), max(3, args.repeats // 2), args.warmup)
        decoder.fused_recurrence = True
        reference_seconds = time_training(lambda: step(reference_loss), max(3, args.repeats // 4), args.warmup)
        figures.update(
            autograd_captions_per_s=args.batch_size / autograd_seconds,
            reference_captions_per_s=args.batch_size / reference_seconds,
            speedup_over_reference=reference_seconds / seconds,
            **losses,
        )
    report(figures, vars(args))


if __name__ == "__main__":
    main()
