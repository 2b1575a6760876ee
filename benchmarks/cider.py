"""CIDEr-D as tensors (captioning.evaluation.cider) against pycocoevalcap's CiderScorer, on synthetic captions.

python benchmarks/cider.py [--device cuda]

The self-critical reward: token ids, document frequencies fixed from a synthetic training set, each batch's
reference vectors computed once for its 5 samples and greedy caption per image; against pycocoevalcap with the
same frequencies set by hand (what ICP's CiderD does), which recomputes the reference vectors for every candidate.
Then the evaluation from raw strings, tokenising counted on both sides: `cider_d` against coco_tokenize +
Cider().compute_score. Words follow a Zipf law, so that n-grams repeat as in real captions. Checks that both
sides give the same scores.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file (python benchmarks/x.py): make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.cider.cider_scorer import CiderScorer

from benchmarks.common import report
from captioning.evaluation.cider import CiderD, cider_d
from captioning.evaluation.metrics import coco_tokenize

PAD, EOS, FIRST_WORD = 0, 2, 4  # the project's vocabulary: <pad>, <bos>, <eos>, <unk>, then words


def median_ms(call: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of one call, in milliseconds, after a warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def zipf_captions(count: int, vocab_size: int, generator: torch.Generator) -> list[list[int]]:
    """`count` captions of 8-16 word ids drawn from a Zipf law (exponent 1) over the vocabulary's words."""
    ranks = torch.arange(1, vocab_size - FIRST_WORD + 1, dtype=torch.float64)
    ids = torch.multinomial(1 / ranks, count * 16, replacement=True, generator=generator) + FIRST_WORD
    lengths = torch.randint(8, 17, (count,), generator=generator).tolist()
    return [row[:length] for row, length in zip(ids.view(count, 16).tolist(), lengths)]


def padded(captions: list[list[int]], width: int) -> torch.Tensor:
    """Captions as rows of ids ending in <eos> then <pad>; those longer than `width` are cut with no <eos>."""
    return torch.tensor([(caption + [EOS] + [PAD] * width)[:width] for caption in captions])


def candidates_of(references: list[list[int]], vocab_size: int, generator: torch.Generator) -> list[list[int]]:
    """A sampled caption for each reference: a new length of 8-16 words, a third of the reference's replaced."""
    replacements = zipf_captions(len(references), vocab_size, generator)
    captions = []
    for reference, replacement in zip(references, replacements):
        keep = (torch.rand(len(replacement), generator=generator) < 2 / 3).tolist()
        captions.append(
            [r if k else w for r, w, k in zip(reference + replacement[len(reference) :], replacement, keep)]
        )
    return captions


class _ImagesOfTheTrainingSet(list):
    """Cooked references whose len() is the training set's image count: CiderScorer.compute_cider takes
    log(len(crefs)) as ref_len, so this fixes ref_len to the training set's while scoring one batch."""

    def __init__(self, cooked: list, images: int) -> None:
        super().__init__(cooked)
        self.images = images

    def __len__(self) -> int:
        return self.images


def pycocoevalcap_reward(
    candidates: list[str], references: list[list[str]], document_frequency: dict, training_images: int
) -> list[float]:
    """pycocoevalcap's CIDEr-D of each candidate against its image's references, frequencies fixed by hand."""
    scorer = CiderScorer()
    for candidate, image in zip(candidates, references):
        scorer += (candidate, image)
    scorer.document_frequency = document_frequency
    scorer.crefs = _ImagesOfTheTrainingSet(scorer.crefs, training_images)
    return scorer.compute_cider()


def sentence(ids: list[int], lexicon: list[str]) -> str:
    """A raw caption as a person writes one: capital letter, a comma, a full stop."""
    words = [lexicon[i] for i in ids]
    words[0] = words[0].capitalize()
    words[len(words) // 2] += ","
    return " ".join(words) + "."


def reward_figures(args: argparse.Namespace, device: torch.device, generator: torch.Generator) -> dict:
    """The self-critical reward of one batch, references prepared in the call, against pycocoevalcap."""
    width = args.max_length + 1  # words and <eos>
    training = zipf_captions(args.training_images * args.references, args.vocab_size, generator)
    per_image = torch.full((args.training_images,), args.references)
    start = time.perf_counter()
    scorer = CiderD(padded(training, width).to(device), per_image.to(device), args.vocab_size, eos_id=EOS)
    frequencies_seconds = time.perf_counter() - start

    batch = training[: args.images * args.references]  # the references of the first images
    image = torch.arange(args.images).repeat_interleave(args.samples + 1)  # (N,)
    echoed = torch.randint(args.references, image.shape, generator=generator)  # the reference each sample echoes
    candidate_ids = candidates_of(
        [batch[i * args.references + j] for i, j in zip(image.tolist(), echoed.tolist())], args.vocab_size, generator
    )
    candidates = padded(candidate_ids, width).to(device)  # (N, T)
    references = padded(batch, width).to(device)  # (images * references, T)
    counts, image_on_device = per_image[: args.images].to(device), image.to(device)

    def ours() -> torch.Tensor:
        return scorer.score(candidates, image_on_device, scorer.prepare(references, counts))

    prepared = scorer.prepare(references, counts)

    # pycocoevalcap on the same words, with the training set's document frequencies (cooking them is not timed).
    as_words = [" ".join(f"w{i}" for i in caption) for caption in training]
    cooking = CiderScorer()
    for first in range(0, len(as_words), args.references):
        cooking += (None, as_words[first : first + args.references])
    cooking.compute_doc_freq()
    candidate_words = [" ".join(f"w{i}" for i in caption[:width]) for caption in candidate_ids]
    reference_words = [as_words[i * args.references : (i + 1) * args.references] for i in image.tolist()]

    def theirs() -> list[float]:
        return pycocoevalcap_reward(candidate_words, reference_words, cooking.document_frequency, args.training_images)

    ours_ms = median_ms(ours, args.repeats, device)
    theirs_ms = median_ms(theirs, max(3, args.repeats // 4), device)
    return {
        "reward_ms": ours_ms,
        "reward_score_only_ms": median_ms(
            lambda: scorer.score(candidates, image_on_device, prepared), args.repeats, device
        ),
        "reward_pycocoevalcap_ms": theirs_ms,
        "reward_speedup": theirs_ms / ours_ms,
        "reward_max_difference": float(np.abs(ours().cpu().numpy() - np.array(theirs())).max()),
        "candidates": len(candidate_ids),
        "training_frequencies_seconds": frequencies_seconds,
        "document_frequency_entries": len(scorer.document_keys) - 1,
    }


def string_figures(args: argparse.Namespace, device: torch.device, generator: torch.Generator) -> dict:
    """The evaluation of one candidate per image from raw strings, tokenising counted on both sides."""
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    lexicon = [
        "".join(letters[(i * 7 + k * 3) % 26] for k in range(3 + i % 6)) + str(i) for i in range(args.vocab_size)
    ]
    images = args.string_images
    strings = [
        sentence(caption, lexicon)
        for caption in zipf_captions(images * (args.references + 1), args.vocab_size, generator)
    ]
    candidates = strings[:images]
    references = [strings[images + i * args.references : images + (i + 1) * args.references] for i in range(images)]

    def ours() -> torch.Tensor:
        return cider_d(candidates, references, device)

    def theirs() -> np.ndarray:
        truths = {str(i): [coco_tokenize(r) for r in image] for i, image in enumerate(references)}
        results = {str(i): [coco_tokenize(c)] for i, c in enumerate(candidates)}
        return Cider().compute_score(truths, results)[1]

    ours_ms = median_ms(ours, args.repeats, device)
    theirs_ms = median_ms(theirs, max(3, args.repeats // 4), device)
    return {
        "strings_ms": ours_ms,
        "strings_pycocoevalcap_ms": theirs_ms,
        "strings_speedup": theirs_ms / ours_ms,
        "strings_max_difference": float(np.abs(ours().cpu().numpy() - theirs()).max()),
        "string_captions": len(strings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vocab-size", type=int, default=7500)
    parser.add_argument("--training-images", type=int, default=10000)
    parser.add_argument("--images", type=int, default=32, help="images of a training batch")
    parser.add_argument("--samples", type=int, default=5, help="sampled captions per image, plus a greedy one")
    parser.add_argument("--references", type=int, default=5, help="references per image")
    parser.add_argument("--string-images", type=int, default=192, help="images scored from strings")
    parser.add_argument("--max-length", type=int, default=16, help="words of a caption row, <eos> excluded")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of torch (small tensors: 1 is fastest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device, generator = torch.device(args.device), torch.Generator().manual_seed(0)
    report({**reward_figures(args, device, generator), **string_figures(args, device, generator)}, vars(args))


if __name__ == "__main__":
    main()
