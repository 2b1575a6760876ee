import math

import pytest

from captioning.evaluation.attention_maps import attention_statistics

REGIONS = 49


def one_hot(region: int) -> list[float]:
    return [1.0 if index == region else 0.0 for index in range(REGIONS)]


def test_uniform_maps_have_the_uniform_peak_and_entropy_and_do_not_move():
    uniform = [1 / REGIONS] * REGIONS
    statistics = attention_statistics([{"attention": [uniform] * 4}])
    assert statistics["attention_peak"] == pytest.approx(1 / REGIONS)
    assert statistics["attention_peak_over_uniform"] == pytest.approx(1.0)
    assert statistics["attention_entropy"] == pytest.approx(math.log(REGIONS))
    assert statistics["attention_entropy_uniform"] == pytest.approx(math.log(REGIONS))
    assert statistics["attention_change"] == pytest.approx(0.0)


def test_sharp_maps_that_move_score_their_peak_and_change_within_captions_only():
    # caption 1 looks at 0, 0, 5 (changes 0 and 2); caption 2 at half 3 / half 4 (peak 0.5), then 3 (change 1).
    # The jump from caption 1's last map to caption 2's first is not a change between consecutive words.
    half = [0.5 if index in (3, 4) else 0.0 for index in range(REGIONS)]
    predictions = [{"attention": [one_hot(0), one_hot(0), one_hot(5)]}, {"attention": [half, one_hot(3)]}]
    statistics = attention_statistics(predictions)
    assert statistics["attention_peak"] == pytest.approx((1 + 1 + 1 + 0.5 + 1) / 5)
    assert statistics["attention_peak_over_uniform"] == pytest.approx(0.9 * REGIONS)
    assert statistics["attention_entropy"] == pytest.approx(math.log(2) / 5)
    assert statistics["attention_change"] == pytest.approx((0 + 2 + 1) / 3)


def test_empty_captions_are_left_out_and_no_words_gives_no_figures():
    statistics = attention_statistics([{"attention": []}, {"attention": [one_hot(1), one_hot(2)]}])
    assert statistics["attention_change"] == pytest.approx(2.0)
    assert attention_statistics([{"attention": []}])["attention_peak"] is None
