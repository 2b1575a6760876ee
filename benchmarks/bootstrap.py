"""The bootstrap intervals of an evaluation (captioning.evaluation.bootstrap) on a synthetic COCO-sized test set.

python benchmarks/bootstrap.py [--images 5000 --references 5 --resamples 1000] [--meteor]

Captions of Zipf-distributed words (benchmarks/cider.py's), candidates sharing two thirds of a reference's words.
Times the per-image statistics that an evaluation computes anyway (pycocoevalcap's BLEU, ROUGE-L and CIDEr on
coco_tokenize'd strings; METEOR's Java matcher with --meteor), then the bootstrap itself: every metric of one model
on `--resamples` resamples of the images, with the losses' and attention's ratio statistics beside them, and the
paired bootstrap of two models. Checks that BLEU from the summed statistics equals pycocoevalcap's corpus BLEU.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file (python benchmarks/x.py): make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import logging
import time

import numpy as np
import torch

from benchmarks.cider import candidates_of, sentence, zipf_captions
from benchmarks.common import report
from captioning.evaluation import metrics
from captioning.evaluation.bootstrap import ImageStatistics, bootstrap_samples, percentile_interval, ratio_statistics
from captioning.evaluation.metrics import BLEU_NAMES, bleu_of_counts, caption_scores


def synthetic_evaluation(
    args: argparse.Namespace, seed: int, lexicon: list[str]
) -> tuple[list[ImageStatistics], float, float]:
    """The per-image statistics of one synthetic model's captions, the seconds they took and how far BLEU from the
    summed statistics is from pycocoevalcap's corpus BLEU."""
    generator = torch.Generator().manual_seed(seed)
    references = zipf_captions(args.images * args.references, args.vocab_size, generator)
    echoed = [references[image * args.references] for image in range(args.images)]
    candidates = {
        str(image): sentence(ids, lexicon)
        for image, ids in enumerate(candidates_of(echoed, args.vocab_size, generator))
    }
    truths = {
        str(image): [
            sentence(ids, lexicon) for ids in references[image * args.references : (image + 1) * args.references]
        ]
        for image in range(args.images)
    }
    start = time.perf_counter()
    scores = caption_scores(candidates, truths)
    seconds = time.perf_counter() - start
    [bleu] = [statistics for statistics in scores.statistics if statistics.names == BLEU_NAMES]
    from_counts = bleu_of_counts(bleu.rows.sum(axis=0, keepdims=True))[0]
    difference = max(abs(from_counts[order] - scores.metrics[name]) for order, name in enumerate(BLEU_NAMES))
    # What the losses and attention maps add: sums per image over its words.
    rng = np.random.default_rng(seed)
    words = rng.integers(8, 17, size=args.images).astype(np.float64)
    loss = ratio_statistics({"test_loss": words * rng.uniform(1.5, 3.5, args.images)}, {"test_loss": words})
    attention = ratio_statistics(
        {
            name: words * rng.uniform(0, 1, args.images)
            for name in ("attention_peak", "attention_entropy", "attention_change")
        },
        {name: words for name in ("attention_peak", "attention_entropy", "attention_change")},
    )
    return [loss, *scores.statistics, attention], seconds, difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--references", type=int, default=5)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--vocab-size", type=int, default=7500)
    parser.add_argument("--meteor", action="store_true", help="METEOR too (needs Java); without it, as if none")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of numpy's and torch's products")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.meteor:  # as on a machine without Java, without the warning that says so
        metrics.java_available = lambda: False
        logging.getLogger(metrics.__name__).setLevel(logging.ERROR)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    lexicon = [
        "".join(letters[(i * 7 + k * 3) % 26] for k in range(3 + i % 6)) + str(i) for i in range(args.vocab_size)
    ]
    a, statistics_seconds, difference_a = synthetic_evaluation(args, 0, lexicon)
    b, _, difference_b = synthetic_evaluation(args, 1, lexicon)

    start = time.perf_counter()
    [samples] = bootstrap_samples([a], args.resamples, seed=0)
    intervals = {name: percentile_interval(values, 0.95) for name, values in samples.items()}
    bootstrap_seconds = time.perf_counter() - start
    start = time.perf_counter()
    samples_a, samples_b = bootstrap_samples([a, b], args.resamples, seed=0)
    paired = {name: percentile_interval(samples_b[name] - samples_a[name], 0.95) for name in samples_a}
    paired_seconds = time.perf_counter() - start
    report(
        {
            "bootstrap_seconds": bootstrap_seconds,
            "paired_bootstrap_seconds": paired_seconds,
            "statistics_seconds": statistics_seconds,
            "metrics": len(samples),
            "bleu_from_statistics_max_difference": max(difference_a, difference_b),
            "bleu_4_interval": intervals["bleu_4"],
            "bleu_4_paired_interval": paired["bleu_4"],
        },
        vars(args),
    )


if __name__ == "__main__":
    main()
