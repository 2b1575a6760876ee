import shutil

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from captioning.evaluation import metrics
from captioning.evaluation.metrics import bleu_of_counts, caption_metrics, caption_scores, coco_tokenize

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


def reference_pipeline() -> tuple[dict[str, float], dict, dict, list[float]]:
    """pycocoevalcap exactly as the COCO caption evaluation runs it (Java PTBTokenizer included)."""
    tokenizer = PTBTokenizer()
    truths = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in REFERENCES.items()})
    results = tokenizer.tokenize({k: [{"caption": c}] for k, c in CANDIDATES.items()})
    bleu, _ = Bleu(4).compute_score(truths, results, verbose=0)
    scores = {f"bleu_{n}": s for n, s in enumerate(bleu, 1)}
    scores["meteor"], meteor_images = Meteor().compute_score(truths, results)
    scores["rouge_l"] = Rouge().compute_score(truths, results)[0]
    scores["cider"] = Cider().compute_score(truths, results)[0]
    return scores, truths, results, meteor_images


@pytest.mark.slow  # starts Java
@requires_java
def test_tokenizer_matches_the_ptb_tokenizer():
    _, truths, results, _ = reference_pipeline()
    for key, references in REFERENCES.items():
        assert [coco_tokenize(reference) for reference in references] == truths[key]
        assert coco_tokenize(CANDIDATES[key]) == results[key][0]


@pytest.mark.slow  # starts Java
@requires_java
def test_metrics_equal_pycocoevalcap():
    expected, truths, results, meteor_images = reference_pipeline()
    computed = caption_metrics(CANDIDATES, REFERENCES)
    assert computed.keys() == expected.keys()
    for name, value in expected.items():
        assert computed[name] == pytest.approx(value, abs=1e-9), name
    assert 0 < computed["bleu_4"] < computed["bleu_1"] < 1
    # METEOR's corpus score is not the mean of its per-image scores: it is that of the summed matcher statistics,
    # which the bootstrap resamples.
    scores = caption_scores(CANDIDATES, REFERENCES)
    [meteor] = [statistics for statistics in scores.statistics if statistics.names == ("meteor",)]
    assert meteor.corpus()["meteor"] == pytest.approx(expected["meteor"], abs=1e-12) == scores.metrics["meteor"]
    assert [scores.images[key]["meteor"] for key in truths] == pytest.approx(meteor_images, abs=1e-12)
    assert np.mean(meteor_images) != pytest.approx(expected["meteor"], abs=1e-3)


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


# Edge cases of BLEU's statistics: an empty candidate, one longer than every reference, one reference only, a
# candidate equal to a reference, references of unequal lengths (the closest one sets the brevity penalty).
EDGE_REFERENCES = {
    **REFERENCES,
    "5": ["a red circle"],
    "6": ["a cat", "a black cat sleeps on the warm sofa", "the cat"],
    "7": ["Two dogs play in the snow.", "Dogs playing."],
}
EDGE_CANDIDATES = {
    **CANDIDATES,
    "5": "",
    "6": "a black cat sleeps on the warm sofa near a window",
    "7": "two dogs play in the snow",
}


def test_bleu_from_per_image_statistics_equals_pycocoevalcap_per_image_and_on_the_whole_set(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)  # no METEOR: BLEU needs no Java
    scores = caption_scores(EDGE_CANDIDATES, EDGE_REFERENCES)
    truths = {
        key: [coco_tokenize(reference) for reference in references] for key, references in EDGE_REFERENCES.items()
    }
    results = {key: [coco_tokenize(EDGE_CANDIDATES[key])] for key in EDGE_REFERENCES}
    corpus, per_image = Bleu(4).compute_score(truths, results, verbose=0)
    [bleu] = [statistics for statistics in scores.statistics if statistics.names[0] == "bleu_1"]
    assert bleu_of_counts(bleu.rows.sum(axis=0, keepdims=True))[0] == pytest.approx(corpus, rel=1e-12, abs=1e-15)
    assert bleu_of_counts(bleu.rows) == pytest.approx(np.array(per_image).T, rel=1e-12, abs=1e-15)
    assert [scores.metrics[f"bleu_{n}"] for n in range(1, 5)] == corpus  # metrics.json: pycocoevalcap's own
    assert [scores.images[key]["bleu_4"] for key in truths] == per_image[3]
    assert scores.images["7"]["bleu_4"] == pytest.approx(1.0, abs=1e-6) and scores.images["5"]["bleu_1"] < 1e-9

    rouge, rouge_images = Rouge().compute_score(truths, results)
    cider, cider_images = Cider().compute_score(truths, results)
    [means] = [statistics for statistics in scores.statistics if statistics.names == ("rouge_l", "cider")]
    assert means.corpus() == pytest.approx({"rouge_l": rouge, "cider": cider}, rel=1e-12)
    assert [scores.images[key]["cider"] for key in truths] == pytest.approx(cider_images, rel=1e-12)
    assert [scores.images[key]["rouge_l"] for key in truths] == pytest.approx(rouge_images, rel=1e-12)
    assert all(image["meteor"] is None for image in scores.images.values())
