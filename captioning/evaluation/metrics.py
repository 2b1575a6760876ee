"""The COCO caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr), computed by pycocoevalcap's own scorers, with
each image's scores and the per-image statistics that the bootstrap resamples (captioning.evaluation.bootstrap).

pycocoevalcap tokenises with Stanford's PTBTokenizer (Java) and drops punctuation; `coco_tokenize` does the
same in Python, so that every metric but METEOR (whose scorer is a Java program) needs no Java.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from captioning.evaluation.bootstrap import ImageStatistics, mean_statistics

if TYPE_CHECKING:
    from pycocoevalcap.meteor.meteor import Meteor

log = logging.getLogger(__name__)

# Tokens that pycocoevalcap's PTBTokenizer wrapper removes after tokenising. Its list holds "-LRB-" etc. in
# upper case while the tokenizer runs with -lowerCase, so brackets stay in as "-lrb-": so they do here.
_PUNCTUATION = {"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
_CLITICS = re.compile(r"(?i)(\w)('s|'re|'ve|'ll|'d|'m|n't)\b")
# A word (with inner hyphens, periods, apostrophes or digit commas, as PTB keeps them) or one other character.
_PTB_TOKEN = re.compile(r"\w+(?:[-'.,/]\w+)*|'\w+|\.\.\.|--|\S")
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "{": "-lcb-", "}": "-rcb-", '"': "''"}


def coco_tokenize(caption: str) -> str:
    """Lower-case and PTB-tokenise a caption, then drop punctuation, as the COCO caption evaluation does."""
    text = _CLITICS.sub(r"\1 \2", caption.lower().replace("\n", " "))
    tokens = [_BRACKETS.get(token, token) for token in _PTB_TOKEN.findall(text)]
    return " ".join(token for token in tokens if token not in _PUNCTUATION)


def java_available() -> bool:
    return shutil.which("java") is not None


def _tokenized(
    candidates: dict[str, str], references: dict[str, list[str]]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """pycocoevalcap's inputs: each image's candidate and references, tokenised as its evaluation does."""
    if candidates.keys() != references.keys():
        raise ValueError("candidates and references must cover the same images")
    results = {key: [coco_tokenize(candidates[key])] for key in candidates}
    truths = {key: [coco_tokenize(reference) for reference in references[key]] for key in references}
    return results, truths


def bleu_4(candidates: dict[str, str], references: dict[str, list[str]]) -> float:
    """Corpus BLEU-4 alone, exactly as `caption_metrics` computes it (validation logs it every epoch)."""
    results, truths = _tokenized(candidates, references)
    return float(Bleu(4).compute_score(truths, results, verbose=0)[0][3])


BLEU_NAMES = ("bleu_1", "bleu_2", "bleu_3", "bleu_4")
# BleuScorer's guards: no match scores about 0, not 0 / 0.
_TINY, _SMALL = 1e-15, 1e-9


def bleu_of_counts(sums: np.ndarray) -> np.ndarray:
    """BLEU-1..4 (R, 4) of n-gram statistics (R, 10) summed over images: clipped matches of orders 1-4, candidate
    n-grams of orders 1-4, candidate words, closest reference words; pycocoevalcap's BleuScorer combination
    (option "closest"), of one image or of a corpus."""
    correct, guess = sums[:, :4], sums[:, 4:8]  # (R, 4) each
    candidate_length, reference_length = sums[:, 8:9], sums[:, 9:10]  # (R, 1) each
    # The geometric mean of the first n precisions, for each n: the n-th root of their running product.
    bleu = np.cumprod((correct + _TINY) / (guess + _SMALL), axis=1) ** (1.0 / np.arange(1, 5))  # (R, 4)
    ratio = (candidate_length + _TINY) / (reference_length + _SMALL)  # (R, 1)
    return np.where(ratio < 1, bleu * np.exp(1 - 1 / ratio), bleu)  # the brevity penalty of a short candidate


def _bleu_statistics(truths: dict[str, list[str]], results: dict[str, list[str]]) -> tuple[BleuScorer, np.ndarray]:
    """pycocoevalcap's BLEU scorer fed with every image (in `truths`' order, as Bleu does) and each image's
    statistics (N, 10) in `bleu_of_counts`' layout, read from the n-gram counts the scorer cooked."""
    scorer = BleuScorer(n=4)
    for key in truths:
        scorer += (results[key][0], truths[key])
    rows = [
        # _single_reflen: the reference length closest to the candidate's, as BleuScorer.compute_score takes it.
        [*cooked["correct"], *cooked["guess"], cooked["testlen"]]
        + [scorer._single_reflen(cooked["reflen"], "closest", cooked["testlen"])]
        for cooked in scorer.ctest
    ]
    return scorer, np.array(rows, dtype=np.float64).reshape(len(rows), 10)


@dataclass
class CaptionScores:
    """The corpus metrics of a set of captions, each image's scores and the statistics to resample them."""

    metrics: dict[str, float | None]  # bleu_1..bleu_4, meteor (None without Java), rouge_l, cider
    images: dict[str, dict[str, float | None]]  # each image's bleu_1..4, meteor, rouge_l, cider, by image key
    statistics: list[ImageStatistics]  # rows in the order of `images`; METEOR's only with Java


def caption_scores(candidates: dict[str, str], references: dict[str, list[str]]) -> CaptionScores:
    """Corpus-level metrics of one candidate per image against all of its references, with each image's scores.

    Per image, BLEU is pycocoevalcap's per-image BLEU (the corpus formula on one image). The corpus CIDEr-D and
    ROUGE-L are the means of the per-image scores (CIDEr's document frequencies are those of all the references
    given); the corpus BLEU and METEOR combine statistics summed over the images.
    """
    results, truths = _tokenized(candidates, references)
    keys = list(truths)
    scorer, bleu_rows = _bleu_statistics(truths, results)
    bleu, bleu_images = scorer.compute_score(option="closest", verbose=0)  # what Bleu(4).compute_score returns
    metrics: dict[str, float | None] = {name: float(score) for name, score in zip(BLEU_NAMES, bleu)}
    meteor = meteor_statistics(truths, results)
    meteor_images: list[float | None] = [None] * len(keys)
    metrics["meteor"] = None
    if meteor is not None:
        meteor_images, metrics["meteor"] = _meteor_evaluation(meteor.rows)
    rouge, rouge_images = Rouge().compute_score(truths, results)
    cider, cider_images = Cider().compute_score(truths, results)
    metrics["rouge_l"], metrics["cider"] = float(rouge), float(cider)
    images = {
        key: {
            **{name: float(bleu_images[order][index]) for order, name in enumerate(BLEU_NAMES)},
            "meteor": meteor_images[index],
            "rouge_l": float(rouge_images[index]),
            "cider": float(cider_images[index]),
        }
        for index, key in enumerate(keys)
    }
    statistics = [
        ImageStatistics(BLEU_NAMES, bleu_rows, bleu_of_counts),
        mean_statistics({"rouge_l": rouge_images, "cider": cider_images}),
    ]
    return CaptionScores(metrics, images, statistics + ([meteor] if meteor is not None else []))


def caption_metrics(candidates: dict[str, str], references: dict[str, list[str]]) -> dict[str, float | None]:
    """Corpus-level metrics of one candidate per image against all of its references.

    Keys: bleu_1..bleu_4, meteor (None without Java), rouge_l, cider.
    """
    return caption_scores(candidates, references).metrics


@functools.cache
def _meteor() -> Meteor:
    """One METEOR scorer for the whole program: a Java process whose start (loading its paraphrase tables) takes
    seconds, reused by every evaluation and resampling."""
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def meteor_statistics(truths: dict[str, list[str]], results: dict[str, list[str]]) -> ImageStatistics | None:
    """Each image's METEOR matcher statistics (N, K), in `truths`' order, computed by METEOR 1.5 through
    pycocoevalcap's Java scorer; None, with a warning, where Java is missing."""
    if not java_available():
        log.warning("METEOR needs Java, which is not installed: meteor is reported as null.")
        return None
    meteor = _meteor()
    with meteor.lock:  # _stat: the statistics line Meteor.compute_score sends for each image
        lines = [meteor._stat(results[key][0], truths[key]) for key in truths]
    rows = np.array([[float(value) for value in line.split()] for line in lines], dtype=np.float64)
    return ImageStatistics(("meteor",), rows.reshape(len(lines), -1), meteor_of_statistics)


def _meteor_evaluation(rows: np.ndarray) -> tuple[list[float], float]:
    """METEOR of each row of matcher statistics (R, K), scored as one segment, and of all rows together: the
    Java scorer's own combination (its EVAL command, which Meteor.compute_score sends with each image's row)."""
    meteor = _meteor()
    line = "EVAL ||| " + " ||| ".join(" ".join(repr(float(value)) for value in row) for row in rows)
    with meteor.lock:
        meteor.meteor_p.stdin.write(f"{line}\n".encode())
        meteor.meteor_p.stdin.flush()
        scores = [float(meteor.meteor_p.stdout.readline().strip()) for _ in range(len(rows))]
        together = float(meteor.meteor_p.stdout.readline().strip())
    return scores, together


def meteor_of_statistics(sums: np.ndarray) -> np.ndarray:
    """METEOR (R, 1) of matcher statistics (R, K) summed over images: METEOR's corpus score is the score of the
    summed statistics, so a sum over one resample of the images gives that resample's METEOR."""
    return np.array(_meteor_evaluation(sums)[0], dtype=np.float64).reshape(-1, 1)
