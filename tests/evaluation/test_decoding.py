import logging

from captioning.evaluation.decoding import caption_statistics, warn_of_empty_captions


def share(name: str, captions: list[str]) -> float | None:
    return caption_statistics(captions).corpus()[name]


def test_empty_captions_are_counted_and_warned_of_with_their_share_and_remedy(caplog):
    captions = ["a red circle", "", "a blue square", ""]
    assert share("empty_captions", captions) == 0.5
    with caplog.at_level(logging.WARNING, logger="captioning.evaluation.decoding"):
        warn_of_empty_captions(captions, beam_size=10, length_penalty=0.0)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "2 of 4 generated captions (50%) are empty (beam 10)" in record.getMessage()
    assert "eval.length_penalty" in record.getMessage()


def test_greedy_empty_captions_are_warned_of_without_suggesting_a_length_penalty(caplog):
    with caplog.at_level(logging.WARNING, logger="captioning.evaluation.decoding"):
        warn_of_empty_captions(["", "a red circle"], beam_size=1, length_penalty=0.0)
    [record] = caplog.records
    assert "1 of 2" in record.getMessage() and "length_penalty" not in record.getMessage()


def test_no_warning_when_every_caption_has_a_word(caplog):
    with caplog.at_level(logging.WARNING, logger="captioning.evaluation.decoding"):
        warn_of_empty_captions(["a red circle", "a blue square"], beam_size=3, length_penalty=0.0)
    assert caplog.records == [] and share("empty_captions", []) is None  # no caption, no share


def test_a_caption_repeats_a_trigram_only_when_the_same_three_words_come_twice():
    captions = [
        "a black shirt and a black shirt",  # "a black shirt" twice
        "a red circle and a red square",  # "a red" twice, but no trigram
        "",
        "red red red red",  # "red red red" twice, overlapping
    ]
    assert share("repeated_trigrams", captions) == 0.5
    assert share("repeated_trigrams", []) is None


def test_mean_length_counts_words_and_empty_captions_as_zero():
    assert share("mean_length", ["a red circle", "", "a blue square on the left"]) == 3.0
    assert share("mean_length", []) is None
