"""Beam search batched over images against the same code run one image at a time.

python benchmarks/generation.py --images 1000 --beam-size 3 --batch-size 100 --vocab-size 7500

Uses a decoder with random weights on random features: generation costs the same whatever was learnt,
except for the number of steps, and random weights rarely say <eos>, so captions run to --max-length (the
worst case). Checks that both ways give identical captions.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file (python benchmarks/x.py): make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import time

import torch

from benchmarks.common import report
from captioning.model.decoder import AttentionDecoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--vocab-size", type=int, default=7500)
    parser.add_argument("--max-length", type=int, default=20)
    parser.add_argument("--regions", type=int, default=49)
    parser.add_argument("--feature-dim", type=int, default=2048)
    parser.add_argument("--sharpness", type=float, default=8.0, help="scale of the random output layer")
    args = parser.parse_args()

    torch.manual_seed(0)
    decoder = AttentionDecoder(args.vocab_size, args.feature_dim).eval()
    # A trained decoder's word distributions are peaked; a random one's are flat, with near-ties that the
    # rounding of differently shaped matrix products can flip. Sharpen them as training would.
    decoder.output.weight.data *= args.sharpness
    features = torch.randn(args.images, args.regions, args.feature_dim) * 30

    start = time.perf_counter()
    batched = [
        decoder.beam_search(features[first : first + args.batch_size], args.beam_size, args.max_length).tokens
        for first in range(0, args.images, args.batch_size)
    ]
    batched_seconds = time.perf_counter() - start

    start = time.perf_counter()
    alone = [
        decoder.beam_search(features[i : i + 1], args.beam_size, args.max_length).tokens for i in range(args.images)
    ]
    alone_seconds = time.perf_counter() - start

    def trimmed(tokens: torch.Tensor) -> list[int]:
        ids = tokens.tolist()
        return ids[: ids.index(decoder.eos_id) + 1] if decoder.eos_id in ids else ids

    batched_captions = [trimmed(row) for block in batched for row in block]
    alone_captions = [trimmed(block[0]) for block in alone]
    lengths = torch.tensor([len(caption) for caption in batched_captions], dtype=torch.float)
    report(
        {
            "batched_images_per_s": args.images / batched_seconds,
            "one_at_a_time_images_per_s": args.images / alone_seconds,
            "speedup": alone_seconds / batched_seconds,
            "identical_captions": batched_captions == alone_captions,
            "share_identical": sum(a == b for a, b in zip(batched_captions, alone_captions)) / args.images,
            "mean_caption_tokens": lengths.mean().item(),
            "batched_seconds": batched_seconds,
            "one_at_a_time_seconds": alone_seconds,
        },
        vars(args),
    )


if __name__ == "__main__":
    main()
