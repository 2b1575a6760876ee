"""Error bars: bootstrap intervals over images, and the paired bootstrap of a comparison, on synthetic scores."""

import math
import re

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.rouge.rouge import Rouge

from captioning.config_checks import check_config
from captioning.errors import ConfigError
from captioning.evaluation import metrics
from captioning.evaluation.bootstrap import (
    bootstrap_samples,
    mean_statistics,
    percentile_interval,
    ratio_statistics,
    resample_counts,
)
from captioning.evaluation.compare import compare_evaluations
from captioning.evaluation.metrics import caption_scores, coco_tokenize
from captioning.evaluation.report import comparison_table, metrics_table
from captioning.evaluation.run import EvaluationSettings
from tests.helpers.runs import compose_evaluate


def interval_of(values: np.ndarray, resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> list[float]:
    [samples] = bootstrap_samples([[mean_statistics({"score": values})]], resamples, seed)
    return percentile_interval(samples["score"], confidence)


def bernoulli(images: int, share: float, seed: int) -> np.ndarray:
    """Per-image scores of 1 on exactly `share` of the images, 0 on the others, in a random order."""
    scores = (np.arange(images) < share * images).astype(np.float64)
    return np.random.default_rng(seed).permutation(scores)


def test_a_constant_score_has_an_interval_of_zero_width():
    low, high = interval_of(np.full(300, 0.37))
    assert low == pytest.approx(0.37, abs=1e-12) and high == pytest.approx(0.37, abs=1e-12)


def test_the_same_seed_draws_the_same_interval_and_another_seed_another():
    scores = bernoulli(200, 0.4, seed=1)
    assert interval_of(scores, seed=3) == interval_of(scores, seed=3)
    assert interval_of(scores, seed=3) != interval_of(scores, seed=4)


def test_the_interval_of_a_share_holds_it_and_has_the_binomial_width_that_halves_with_four_times_the_images():
    # The mean of N Bernoulli(p) scores has standard error sqrt(p (1 - p) / N): a 95% interval is about
    # 2 * 1.96 of it wide, halving when N is four times larger.
    widths = {}
    for images in (400, 1600):
        low, high = interval_of(bernoulli(images, 0.3, seed=images), resamples=2000)
        assert low < 0.3 < high
        expected = 2 * 1.959964 * math.sqrt(0.3 * 0.7 / images)
        assert high - low == pytest.approx(expected, rel=0.12), images
        widths[images] = high - low
    assert widths[1600] / widths[400] == pytest.approx(0.5, rel=0.15)


def test_resamples_draw_as_many_images_as_the_set_holds_with_replacement():
    counts = np.concatenate(list(resample_counts(images=50, resamples=300, seed=0)))  # (300, 50)
    assert counts.shape == (300, 50) and (counts.sum(axis=1) == 50).all()
    assert counts.max() > 1 and (counts == 0).any()  # some images twice, some not at all
    # Each image is drawn Binomial(50, 1/50) times: on average once, P(not drawn) = (49/50)^50.
    assert counts.mean() == 1 and (counts == 0).mean() == pytest.approx((49 / 50) ** 50, abs=0.02)


def test_a_ratio_of_sums_is_undefined_on_resamples_without_a_denominator_and_left_out_of_the_interval():
    # One image in ten holds the only named word: a resample without it has no grounding share.
    named = np.zeros(10)
    named[0] = 1
    statistics = ratio_statistics({"grounding": named}, {"grounding": named})
    [samples] = bootstrap_samples([[statistics]], 500, seed=0)
    assert np.isnan(samples["grounding"]).any() and statistics.corpus() == {"grounding": 1.0}
    assert percentile_interval(samples["grounding"], 0.95) == [1.0, 1.0]
    assert percentile_interval(np.full(5, np.nan), 0.95) is None


WORDS = "a man dog red ball runs on the grass with two men sitting street shirt blue".split()


def random_corpus(images: int, seed: int) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Captions of random words: candidates of 0-12 words (some empty), 1-5 references of 1-14 words."""
    generator = np.random.default_rng(seed)

    def sentence(low: int, high: int) -> str:
        return " ".join(generator.choice(WORDS, size=generator.integers(low, high)))

    candidates = {str(image): sentence(0, 13) for image in range(images)}
    references = {str(image): [sentence(1, 15) for _ in range(generator.integers(1, 6))] for image in range(images)}
    return candidates, references


@pytest.fixture
def without_java(monkeypatch):
    """No METEOR (a Java program): the other metrics need none."""
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)


def test_bleu_of_a_resample_equals_pycocoevalcap_on_the_resampled_corpus(without_java):
    candidates, references = random_corpus(40, seed=0)
    scores = caption_scores(candidates, references)
    [samples] = bootstrap_samples([scores.statistics], 5, seed=7)
    keys = list(references)
    for resample, counts in enumerate(next(resample_counts(len(keys), 5, seed=7))):
        # The resampled corpus itself: image i as many times as it was drawn, each copy an image of its own.
        copies = [(f"{key}/{copy}", key) for key, count in zip(keys, counts.astype(int)) for copy in range(count)]
        truths = {copy: [coco_tokenize(reference) for reference in references[key]] for copy, key in copies}
        results = {copy: [coco_tokenize(candidates[key])] for copy, key in copies}
        bleu, _ = Bleu(4).compute_score(truths, results, verbose=0)
        for order in range(4):
            assert samples[f"bleu_{order + 1}"][resample] == pytest.approx(bleu[order], rel=1e-12, abs=1e-15)
        assert samples["rouge_l"][resample] == pytest.approx(Rouge().compute_score(truths, results)[0], rel=1e-12)


def test_a_model_compared_with_itself_differs_by_zero_with_an_interval_of_zero():
    scores = bernoulli(100, 0.5, seed=0)
    evaluation = synthetic_evaluation(scores, "a.ckpt")
    comparison = compare_evaluations(evaluation, evaluation, EvaluationSettings(bootstrap_resamples=500))
    row = comparison["metrics"]["cider"]
    assert row["difference"] == 0 and row["interval"] == [0.0, 0.0] and not row["excludes_zero"]


def synthetic_evaluation(scores: np.ndarray, checkpoint: str, order: np.ndarray | None = None) -> dict:
    """What evaluate_checkpoint returns for per-image CIDEr `scores`, its images listed in `order`."""
    order = np.arange(len(scores)) if order is None else order
    statistics = mean_statistics({"cider": scores[order]})
    return {
        "metrics": {**statistics.corpus(), "meteor": None, "num_images": len(scores), "checkpoint": checkpoint},
        "output_dir": checkpoint + ".eval",
        "images": [(f"images/{image}.jpg", [f"caption {image}"]) for image in order],
        "statistics": [statistics],
    }


def test_b_better_by_a_tenth_on_every_image_has_a_paired_interval_of_exactly_a_tenth():
    # Unpaired, the spread of A's and B's scores over the images would widen the interval; paired, it cancels.
    scores = np.random.default_rng(0).uniform(0, 1, 300)
    a = synthetic_evaluation(scores, "a.ckpt")
    b = synthetic_evaluation(scores + 0.1, "b.ckpt", order=np.random.default_rng(1).permutation(300))  # reordered
    comparison = compare_evaluations(a, b, EvaluationSettings(bootstrap_resamples=1000))
    row = comparison["metrics"]["cider"]
    assert row["difference"] == pytest.approx(0.1, abs=1e-12)
    assert row["interval"] == pytest.approx([0.1, 0.1], abs=1e-12) and row["excludes_zero"]
    assert comparison["num_images"] == 300 and comparison["bootstrap"]["paired"]
    assert list(comparison["metrics"]) == ["cider"]  # meteor is null in both: not compared
    table = comparison_table(comparison)
    a_value, b_value = f"{scores.mean():.4f}", f"{scores.mean() + 0.1:.4f}"
    row_pattern = rf"^cider +{a_value} +{b_value} +\+0\.1000 +\[\+0\.1000, \+0\.1000\] +\*$"
    assert re.search(row_pattern, table, re.MULTILINE), table


def test_checkpoints_evaluated_on_other_images_or_references_are_not_compared():
    scores = np.linspace(0, 1, 20)
    a = synthetic_evaluation(scores, "a.ckpt")
    fewer = synthetic_evaluation(scores[:15], "b.ckpt")
    with pytest.raises(ConfigError, match=r"different images \(20 for ckpt, 15 for compare, 15 in common\)"):
        compare_evaluations(a, fewer, EvaluationSettings())
    relabelled = synthetic_evaluation(scores, "b.ckpt")
    relabelled["images"][3] = ("images/3.jpg", ["another caption"])
    with pytest.raises(ConfigError, match="image images/3.jpg has other reference captions"):
        compare_evaluations(a, relabelled, EvaluationSettings())


def test_the_table_prints_each_metric_beside_its_interval():
    table = metrics_table(
        {"bleu_4": 0.68341, "meteor": None, "num_images": 150, "intervals": {"bleu_4": [0.66123, 0.70499]}}
    )
    assert table.splitlines() == ["bleu_4  0.6834  [0.6612, 0.7050]", "meteor     n/a"]


def test_no_resamples_turns_the_intervals_off_and_impossible_settings_are_refused(tmp_path):
    scores = np.linspace(0, 1, 20)
    settings = EvaluationSettings(bootstrap_resamples=0)
    comparison = compare_evaluations(synthetic_evaluation(scores, "a"), synthetic_evaluation(scores + 1, "b"), settings)
    assert comparison["bootstrap"] is None and comparison["metrics"]["cider"]["interval"] is None
    assert comparison["metrics"]["cider"]["difference"] == pytest.approx(1.0)
    assert "(no interval)" in comparison_table(comparison) and "*" not in comparison_table(comparison)
    with pytest.raises(ConfigError, match=r"eval.confidence=1.5 .* e.g. eval.confidence=0.95"):
        check_config(compose_evaluate(tmp_path, "ckpt=model.ckpt", "eval.confidence=1.5"))
    with pytest.raises(ConfigError, match=r"eval.bootstrap_resamples=-1 .* e.g. eval.bootstrap_resamples=1000"):
        check_config(compose_evaluate(tmp_path, "ckpt=model.ckpt", "eval.bootstrap_resamples=-1"))
