"""The COCO caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr), computed by pycocoevalcap's own scorers.

pycocoevalcap tokenises with Stanford's PTBTokenizer (Java) and drops punctuation; `coco_tokenize` does the
same in Python, so that every metric but METEOR (whose scorer is a Java program) needs no Java.
"""

from __future__ import annotations

import logging
import re
import shutil

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

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


def caption_metrics(candidates: dict[str, str], references: dict[str, list[str]]) -> dict[str, float | None]:
    """Corpus-level metrics of one candidate per image against all of its references.

    Keys: bleu_1..bleu_4, meteor (None without Java), rouge_l, cider.
    """
    results, truths = _tokenized(candidates, references)
    bleu, _ = Bleu(4).compute_score(truths, results, verbose=0)
    metrics: dict[str, float | None] = {f"bleu_{n}": float(score) for n, score in enumerate(bleu, start=1)}
    metrics["meteor"] = meteor_score(truths, results)
    metrics["rouge_l"] = float(Rouge().compute_score(truths, results)[0])
    metrics["cider"] = float(Cider().compute_score(truths, results)[0])
    return metrics


def meteor_score(truths: dict[str, list[str]], results: dict[str, list[str]]) -> float | None:
    """METEOR 1.5 through pycocoevalcap's Java scorer; None, with a warning, where Java is missing."""
    if not java_available():
        log.warning("METEOR needs Java, which is not installed: meteor is reported as null.")
        return None
    from pycocoevalcap.meteor.meteor import Meteor

    return float(Meteor().compute_score(truths, results)[0])
