"""A self-critical training step against a cross-entropy step, as `train.py` runs them, on cached features.

python benchmarks/scst_step.py [--device cuda] [--batch-size 32] [--samples 5]

The cross-entropy step: `compute_gradients` + Adam on `--batch-size` captions. The SCST step: greedy captions,
`--samples` sampled captions per image, the CIDEr-D reward (training-set document frequencies, 5 references
per image), the baseline, backward and Adam, on `--batch-size` images. Also times the reward alone on the
step's captions, so that its share of the step shows. Captions of a random model run to the maximum length,
the slowest case. Prints one JSON line.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file (python benchmarks/x.py): make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import functools

import torch
import torch.nn.functional as F

from benchmarks.common import report
from benchmarks.train_step import CachedFeaturesOnly, synchronize, time_steps
from captioning.evaluation.cider import CiderReward
from captioning.model.lightning_module import CaptioningModule
from captioning.vocabulary import SPECIAL_TOKENS, Vocabulary


def references(images: int, per_image: int, length: int, vocab_size: int, generator: torch.Generator) -> torch.Tensor:
    """Encoded references (images, per_image, length + 2): `<bos>`, Zipf-distributed words, `<eos>`."""
    ranks = torch.arange(1, vocab_size - len(SPECIAL_TOKENS) + 1, dtype=torch.float64)
    words = torch.multinomial(1 / ranks, images * per_image * length, replacement=True, generator=generator)
    captions = (words + len(SPECIAL_TOKENS)).view(images, per_image, length)
    bos = torch.full((images, per_image, 1), 1)
    eos = torch.full((images, per_image, 1), 2)
    return torch.cat([bos, captions, eos], dim=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32, help="captions (cross-entropy) and images (SCST)")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--vocab-size", type=int, default=7500)
    parser.add_argument("--caption-len", type=int, default=16, help="words of the references and of max_length")
    parser.add_argument("--regions", type=int, default=49)
    parser.add_argument("--feature-dim", type=int, default=2048)
    parser.add_argument("--training-images", type=int, default=2000, help="images the reward's frequencies count")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)

    vocabulary = [*SPECIAL_TOKENS, *(f"word{index}" for index in range(args.vocab_size - len(SPECIAL_TOKENS)))]
    make = functools.partial(
        CaptioningModule,
        CachedFeaturesOnly(args.feature_dim),
        vocabulary,
        embed_dim=256,
        hidden_dim=256,
        attention_dim=256,
        max_caption_length=args.caption_len,
    )
    reward = CiderReward()
    training = references(args.training_images, 5, args.caption_len, args.vocab_size, generator)
    reward.fit([[caption.tolist() for caption in image] for image in training], Vocabulary(vocabulary))
    cross_entropy = make().to(device)
    self_critical = make(objective="self_critical", samples=args.samples, reward=reward).to(device)
    features = (torch.randn(args.batch_size, args.regions, args.feature_dim, generator=generator) * 30).to(device)
    batch_references = training[: args.batch_size].to(device)  # (B, 5, T)
    captions = batch_references[:, 0]  # (B, T): one caption per image for the cross-entropy step

    ce_optimizer = cross_entropy.configure_optimizers()["optimizer"]
    scst_optimizer = self_critical.configure_optimizers()["optimizer"]

    def cross_entropy_step() -> None:
        cross_entropy.compute_gradients(features, captions)
        ce_optimizer.step()

    def self_critical_step() -> None:
        self_critical.self_critical_gradients(features, batch_references)
        scst_optimizer.step()

    with torch.no_grad():  # the captions a step scores: samples and greedy captions, as long as they come
        sampled = self_critical.decoder.sample(features, args.samples, args.caption_len).tokens
        greedy = self_critical.decoder.eval().greedy(features, args.caption_len).tokens
        self_critical.decoder.train()
    width = max(sampled.size(1), greedy.size(1))
    candidates = torch.cat([F.pad(t, (0, width - t.size(1))) for t in (sampled, greedy)])
    image = torch.cat([torch.arange(args.batch_size).repeat_interleave(args.samples), torch.arange(args.batch_size)])
    image = image.to(device)

    def reward_alone() -> None:
        reward(candidates, image, batch_references)

    ce_seconds = time_steps(cross_entropy_step, args.repeats, 2, device)
    scst_seconds = time_steps(self_critical_step, args.repeats, 2, device)
    reward_seconds = time_steps(reward_alone, args.repeats * 3, 2, device)
    synchronize(device)
    report(
        {
            "cross_entropy_step_ms": ce_seconds * 1e3,
            "self_critical_step_ms": scst_seconds * 1e3,
            "ratio": scst_seconds / ce_seconds,
            "reward_ms": reward_seconds * 1e3,
            "reward_share_of_scst_step": reward_seconds / scst_seconds,
            "scored_captions": len(candidates),
            "sampled_length": sampled.size(1),
        },
        vars(args),
    )


if __name__ == "__main__":
    main()
