"""Training-step throughput of the decoder on cached features: forward + backward + clipping + Adam.

python benchmarks/train_step.py [--device cuda] [--precision 32|bf16] [--batch-size 32] [--step auto] [--reference]

Times `CaptioningModule.compute_gradients` and the optimizer step, as `train.py` runs them, by the path of
`--step` (auto: a CUDA graph of the fixed-shape step on a GPU, packed captions on the CPU). Prints one JSON
line: captions per second, and the useful GFLOP/s (the matrix products the model needs, counted once per
caption). `--reference` also times the tutorial's plain per-step loop (`captioning.model.tutorial`) in the
same run and precision, reports the speed-up over it, and checks that the paths give the same loss.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file (python benchmarks/x.py): make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

from benchmarks.common import gemm_gflops, report
from captioning.model.lightning_module import CaptioningModule
from captioning.model.tutorial import tutorial_forward
from captioning.vocabulary import SPECIAL_TOKENS


class CachedFeaturesOnly(torch.nn.Module):
    """Stands in for the frozen encoder: the benchmark feeds cached features."""

    weights, random_init_seed = None, 0

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.feature_dim = feature_dim


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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, repeats: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of `step`, after `warmup` calls (which include any capture or compilation)."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["32", "bf16"], default="32", help="bf16: autocast, as bf16-mixed")
    parser.add_argument("--step", choices=["auto", "packed", "padded", "graph"], default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--vocab-size", type=int, default=7500)
    parser.add_argument("--caption-len", type=int, default=20, help="words per caption (+ <eos>)")
    parser.add_argument("--embed-dim", type=int, default=256)
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--attention-dim", type=int, default=256)
    parser.add_argument("--regions", type=int, default=49)
    parser.add_argument("--feature-dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=None, help="timed steps (default: 200 on a GPU, 10 on CPU)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--reference", action="store_true", help="also time the tutorial's per-step loop")
    parser.add_argument("--compile", action="store_true", help="model.compile_step=true: torch.compile each step")
    args = parser.parse_args()
    device = torch.device(args.device)
    repeats = args.repeats or (200 if device.type == "cuda" else 10)

    torch.manual_seed(0)
    vocabulary = [*SPECIAL_TOKENS, *(f"word{index}" for index in range(args.vocab_size - len(SPECIAL_TOKENS)))]
    module = CaptioningModule(
        CachedFeaturesOnly(args.feature_dim),
        vocabulary,
        embed_dim=args.embed_dim,
        hidden_dim=args.hidden_dim,
        attention_dim=args.attention_dim,
        max_caption_length=args.caption_len,
        train_step=args.step,
        compile_step=args.compile,
    ).to(device)
    optimizer = module.configure_optimizers()["optimizer"]  # fused Adam, as in training
    features = (torch.randn(args.batch_size, args.regions, args.feature_dim) * 30).half().float().to(device)
    captions = torch.randint(len(SPECIAL_TOKENS), args.vocab_size, (args.batch_size, args.caption_len + 2))
    captions[:, 0], captions[:, -1] = module.vocabulary.bos_id, module.vocabulary.eos_id
    captions = captions.to(device)
    bf16 = args.precision == "bf16"

    def autocast():
        if not bf16:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)  # as Lightning's bf16-mixed

    def project_step() -> None:
        with autocast():
            module.compute_gradients(features, captions)
        optimizer.step()

    def tutorial_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            logits = tutorial_forward(module.decoder, features, captions[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1).float(), captions[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.decoder.parameters(), 5.0)
        optimizer.step()

    flops = useful_flops_per_caption(
        args.caption_len + 1,
        args.regions,
        args.feature_dim,
        args.embed_dim,
        args.hidden_dim,
        args.attention_dim,
        args.vocab_size,
    )
    start = time.perf_counter()
    project_step()  # the first step: any compilation
    synchronize(device)
    first_step_seconds = time.perf_counter() - start
    seconds = time_steps(project_step, repeats, args.warmup, device)
    figures = {
        "step": module._path(features),
        "first_step_s": first_step_seconds,
        "captions_per_s": args.batch_size / seconds,
        "step_ms": seconds * 1e3,
        "useful_gflops": flops * args.batch_size / seconds / 1e9,
    }
    if device.type == "cpu":
        figures["gemm_gflops"] = gemm_gflops()
    if args.reference:
        tutorial_seconds = time_steps(tutorial_step, max(3, repeats // 4), 2, device)
        figures.update(
            tutorial_captions_per_s=args.batch_size / tutorial_seconds,
            speedup_over_tutorial=tutorial_seconds / seconds,
        )
        module.eval()  # no dropout: the paths must give the same loss on the same weights
        with torch.no_grad(), autocast():
            inputs = captions[:, :-1]
            figures["loss_packed"] = module.caption_loss(features, captions)[0].item()
            normalised = module.decoder.normalise(features)
            figures["loss_padded"] = module.caption_loss(normalised, captions, padded=True)[0].item()  # graph's step
            logits = tutorial_forward(module.decoder, features, inputs)
            figures["loss_tutorial"] = F.cross_entropy(logits.flatten(0, 1).float(), captions[:, 1:].flatten()).item()
    report(figures, vars(args))


if __name__ == "__main__":
    main()
