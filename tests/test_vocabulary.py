import pytest

from captioning.vocabulary import SPECIAL_TOKENS, Vocabulary, detokenize, tokenize


def test_tokenize_lowercases_and_splits_punctuation():
    assert tokenize("A man's dog, running.") == ["a", "man's", "dog", ",", "running", "."]
    assert tokenize("Un café  au lait!") == ["un", "café", "au", "lait", "!"]


def test_build_counts_training_words_with_min_frequency():
    vocabulary = Vocabulary.build(["a red circle", "a blue circle", "a red square"], min_frequency=2)
    assert vocabulary.tokens == [*SPECIAL_TOKENS, "a", "circle", "red"]


def test_encode_decode_round_trip():
    vocabulary = Vocabulary.build(["a man, sitting on a rock."], min_frequency=1)
    ids = vocabulary.encode("A man, sitting on a rock.", max_length=20)
    assert ids[0] == vocabulary.bos_id and ids[-1] == vocabulary.eos_id
    assert vocabulary.decode(ids) == "a man, sitting on a rock."
    assert vocabulary.decode(ids + [vocabulary.index["man"]]) == "a man, sitting on a rock."  # stops at <eos>


def test_unknown_words_and_truncation():
    vocabulary = Vocabulary.build(["a red circle"], min_frequency=1)
    ids = vocabulary.encode("a green circle above a red circle", max_length=3)
    assert ids == [
        vocabulary.bos_id,
        vocabulary.index["a"],
        vocabulary.unk_id,
        vocabulary.index["circle"],
        vocabulary.eos_id,
    ]


def test_detokenize_attaches_punctuation():
    assert detokenize(["two", "shapes", ":", "a", "circle", ",", "a", "square", "."]) == (
        "two shapes: a circle, a square."
    )


def test_vocabulary_must_start_with_special_tokens():
    with pytest.raises(ValueError):
        Vocabulary(["a", "b"])
