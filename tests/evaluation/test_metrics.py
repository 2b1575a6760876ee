import shutil

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from captioning.evaluation import metrics
from captioning.evaluation.metrics import caption_metrics, coco_tokenize

REFERENCES = {
    "1": ["A shirtless man is sitting on the ground holding fruit.", "A man sits on the ground, eating."],
    "2": ["A man races another man in the background.", "Two men (one in red) are running a race!"],
    "3": ["2 worker men with white helmets and orange shirts.", "Workers in hard-hats don't smile; they work."],
    "4": ['A dog\'s "favourite" toy is a ball...', "The dog runs after a ball on the grass -- happily."],
}
CANDIDATES = {
    "1": "a man in a blue shirt is sitting on a rock.",
    "2": "a man in a black shirt is walking down a street.",
    "3": "a man in a white shirt and a white shirt and a white shirt and black pants.",
    "4": "a dog's running on the grass with a ball",
}

# The reference pipeline runs Stanford's PTBTokenizer and the METEOR scorer, both Java programs.
requires_java = pytest.mark.skipif(
    shutil.which("java") is None, reason="needs Java: pycocoevalcap's PTBTokenizer and METEOR are Java programs"
)


def reference_pipeline() -> dict[str, float]:
    """pycocoevalcap exactly as the COCO caption evaluation runs it (Java PTBTokenizer included)."""
    tokenizer = PTBTokenizer()
    truths = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in REFERENCES.items()})
    results = tokenizer.tokenize({k: [{"caption": c}] for k, c in CANDIDATES.items()})
    bleu, _ = Bleu(4).compute_score(truths, results, verbose=0)
    scores = {f"bleu_{n}": s for n, s in enumerate(bleu, 1)}
    scores["meteor"] = Meteor().compute_score(truths, results)[0]
    scores["rouge_l"] = Rouge().compute_score(truths, results)[0]
    scores["cider"] = Cider().compute_score(truths, results)[0]
    return scores, truths, results


@pytest.mark.slow  # starts Java
@requires_java
def test_tokenizer_matches_the_ptb_tokenizer():
    _, truths, results = reference_pipeline()
    for key, references in REFERENCES.items():
        assert [coco_tokenize(reference) for reference in references] == truths[key]
        assert coco_tokenize(CANDIDATES[key]) == results[key][0]


@pytest.mark.slow  # starts Java
@requires_java
def test_metrics_equal_pycocoevalcap():
    expected, _, _ = reference_pipeline()
    computed = caption_metrics(CANDIDATES, REFERENCES)
    assert computed.keys() == expected.keys()
    for name, value in expected.items():
        assert computed[name] == pytest.approx(value, abs=1e-9), name
    assert 0 < computed["bleu_4"] < computed["bleu_1"] < 1


@pytest.mark.slow  # starts Java for METEOR, where it is installed
def test_a_perfect_candidate_scores_one():
    computed = caption_metrics(
        {"1": "a red circle left of a blue square ."}, {"1": ["A red circle left of a blue square."]}
    )
    assert computed["bleu_4"] == pytest.approx(1.0, abs=1e-6) and computed["rouge_l"] == pytest.approx(1.0)


def test_meteor_is_null_without_java(monkeypatch, caplog):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    computed = caption_metrics(CANDIDATES, REFERENCES)
    assert computed["meteor"] is None and computed["cider"] > 0
    assert "METEOR needs Java" in caplog.text
