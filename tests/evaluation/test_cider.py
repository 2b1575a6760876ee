import math
import random

import numpy as np
import pytest
import torch
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.cider.cider_scorer import CiderScorer

from captioning.evaluation.cider import CiderD, CiderDMetric, cider_d
from captioning.evaluation.metrics import coco_tokenize

PAD, EOS = 0, 2  # as in the project's vocabulary, whose words start at id 4

REFERENCES = [
    ["A shirtless man is sitting on the ground holding fruit.", "A man sits on the ground, eating."],
    ["A man races another man in the background."],
    ["2 worker men with white helmets and orange shirts.", "Workers in hard-hats don't smile; they work.", ""],
    ['A dog\'s "favourite" toy is a ball...', "The dog runs after a ball on the grass -- happily.", "A dog.", "Dog!"],
    [
        "Two men (one in red) are running a race!",
        "Men run.",
        "Two MEN running, running, running a race.",
        "Runners on a track in the sun",
        "the the the the",
    ],
    ["A little girl climbing into a wooden playhouse.", "A girl goes into a wooden building."],
    [
        "A long caption about a small brown dog that runs across a wide green field of grass towards a red ball "
        "while its owner, a tall woman in a blue coat, watches from a wooden bench near the old stone wall.",
        "A dog runs across a field towards a ball.",
    ],
]
CANDIDATES = [
    "A man in a blue shirt is sitting on a rock.",
    "",  # an empty candidate
    "a man in a white shirt and a white shirt and a white shirt and black pants.",
    "A dog's running on the grass with a ball",
    "Two men running a race.",
    "A girl goes into a wooden building.",  # identical to a reference
    "A small brown dog runs across a wide green field of grass towards a red ball while a tall woman in a blue "
    "coat watches from a wooden bench near the old stone wall and the sun sets behind the trees.",
]


def pycocoevalcap_scores(candidates: list[str], references: list[list[str]]) -> tuple[float, np.ndarray]:
    """pycocoevalcap's Cider on coco_tokenize'd captions, as captioning.evaluation.metrics feeds it."""
    truths = {str(i): [coco_tokenize(r) for r in image] for i, image in enumerate(references)}
    results = {str(i): [coco_tokenize(c)] for i, c in enumerate(candidates)}
    return Cider().compute_score(truths, results)


class _TrainingImages(list):
    """pycocoevalcap's cooked references whose len() is the training set's image count: its compute_cider takes
    log(len(crefs)) as ref_len, so this fixes ref_len to the training set's while scoring a few images."""

    def __init__(self, cooked: list, images: int) -> None:
        super().__init__(cooked)
        self.images = images

    def __len__(self) -> int:
        return self.images


def pycocoevalcap_fixed_df(
    candidates: list[str], references: list[list[str]], training_references: list[list[str]]
) -> np.ndarray:
    """pycocoevalcap's CIDEr-D of word strings with document frequencies and ref_len from the training set."""
    training = CiderScorer()
    for image in training_references:
        training += (None, image)
    training.compute_doc_freq()
    scorer = CiderScorer()
    for candidate, image in zip(candidates, references):
        scorer += (candidate, image)
    scorer.document_frequency = training.document_frequency
    scorer.crefs = _TrainingImages(scorer.crefs, len(training_references))
    return np.array(scorer.compute_cider())


def words(ids: list[int]) -> str:
    return " ".join(f"w{i}" for i in ids)


def random_ids(generator: random.Random, vocab_size: int, lengths: tuple[int, int]) -> list[int]:
    """Word ids (from 4, few distinct ones so that n-grams repeat) of a random length."""
    return [generator.randrange(4, vocab_size) for _ in range(generator.randint(*lengths))]


def padded(rows: list[list[int]], width: int) -> torch.Tensor:
    return torch.tensor([row + [PAD] * (width - len(row)) for row in rows])


def training_set(images: int, vocab_size: int, seed: int = 0) -> list[list[list[int]]]:
    generator = random.Random(seed)
    return [[random_ids(generator, vocab_size, (3, 9)) for _ in range(generator.randint(1, 5))] for _ in range(images)]


def batch_references(images: list[list[list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images' references as rows of ids ending in <eos>, and the number of references of each image."""
    rows = [reference + [EOS] for image in images for reference in image]
    return padded(rows, 12), torch.tensor([len(image) for image in images])


def scorer_of(training: list[list[list[int]]], vocab_size: int, **options) -> CiderD:
    return CiderD(*batch_references(training), vocab_size, eos_id=EOS, pad_id=PAD, **options)


def test_scores_equal_pycocoevalcap_per_image_and_in_the_mean():
    expected_mean, expected = pycocoevalcap_scores(CANDIDATES, REFERENCES)
    scores = cider_d(CANDIDATES, REFERENCES)
    assert scores.dtype == torch.float64 and scores.shape == (len(CANDIDATES),)
    np.testing.assert_allclose(scores.numpy(), expected, rtol=0, atol=1e-6)
    assert scores.mean().item() == pytest.approx(expected_mean, abs=1e-6)
    assert scores[1] == 0 and len(set(expected.round(6))) == len(expected)  # the captions test distinct cases


def test_scores_equal_pycocoevalcap_on_many_random_captions():
    generator = random.Random(1)
    references = [
        [words(random_ids(generator, 24, (0, 14))) for _ in range(generator.randint(1, 5))] for _ in range(60)
    ]
    candidates = [words(random_ids(generator, 24, (0, 14))) for _ in range(60)]
    expected_mean, expected = pycocoevalcap_scores(candidates, references)
    scores = cider_d(candidates, references)
    np.testing.assert_allclose(scores.numpy(), expected, rtol=0, atol=1e-6)
    assert scores.mean().item() == pytest.approx(expected_mean, abs=1e-6)


def test_token_ids_with_training_frequencies_equal_pycocoevalcap_with_the_same_frequencies():
    vocab_size = 14
    training = training_set(40, vocab_size)
    scorer = scorer_of(training, vocab_size)
    generator = random.Random(2)
    # Three training images and one the training set lacks, each captioned by two samples.
    images = training[:3] + [[random_ids(generator, vocab_size, (3, 9)) for _ in range(2)]]
    samples = [random_ids(generator, vocab_size, (0, 10)) for _ in range(8)]
    samples[0] = images[0][0]  # a sample identical to a reference
    candidates = padded([sample + [EOS] for sample in samples], 12)
    candidates[1, len(samples[1]) + 1 :] = 5  # words after <eos> do not count
    image = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])

    scores = scorer.score(candidates, image, scorer.prepare(*batch_references(images)))

    expected = pycocoevalcap_fixed_df(
        [words(sample) for sample in samples],
        [[words(reference) for reference in images[i]] for i in image.tolist()],
        [[words(reference) for reference in image] for image in training],
    )
    np.testing.assert_allclose(scores.numpy(), expected, rtol=0, atol=1e-6)
    assert (scores > 0).sum() >= 4


def test_references_computed_once_score_every_sample_as_if_alone():
    vocab_size = 12
    training = training_set(30, vocab_size, seed=3)
    scorer = scorer_of(training, vocab_size)
    generator = random.Random(4)
    images = training[:4]
    samples = [random_ids(generator, vocab_size, (1, 10)) for _ in range(4 * 6)]  # 5 samples + a greedy caption
    candidates = padded([sample + [EOS] for sample in samples], 12)
    image = torch.arange(4).repeat_interleave(6)

    together = scorer.score(candidates, image, scorer.prepare(*batch_references(images)))

    alone = torch.cat(
        [
            scorer.score(
                candidates[i : i + 1, : len(samples[i]) + 1],
                torch.tensor([0]),
                scorer.prepare(*batch_references([images[image[i]]])),
            )
            for i in range(len(samples))
        ]
    )
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-12)
    assert together.std() > 0


def test_counting_eos_punishes_a_caption_cut_at_the_maximum_length():
    vocab_size = 12
    training = training_set(30, vocab_size, seed=5)
    images = training[:1]
    finished = torch.tensor([images[0][0] + [EOS]])  # (1, L + 1): a reference's words, then <eos>
    cut = torch.tensor([images[0][0]])  # (1, L): the same words, cut off at the maximum length with no end

    def scores(scorer: CiderD) -> torch.Tensor:
        prepared = scorer.prepare(*batch_references(images))
        return torch.cat([scorer.score(candidate, torch.tensor([0]), prepared) for candidate in (finished, cut)])

    with_eos = scores(scorer_of(training, vocab_size, count_eos=True))
    expected = pycocoevalcap_fixed_df(
        [words(images[0][0] + [EOS]), words(images[0][0])],
        [[words(reference + [EOS]) for reference in images[0]]] * 2,
        [[words(reference + [EOS]) for reference in image] for image in training],
    )
    np.testing.assert_allclose(with_eos.numpy(), expected, rtol=0, atol=1e-6)
    assert with_eos[0] > with_eos[1] + 0.1

    without_eos = scores(scorer_of(training, vocab_size))
    assert without_eos[0] == without_eos[1]
    expected = pycocoevalcap_fixed_df(
        [words(images[0][0])],
        [[words(reference) for reference in images[0]]],
        [[words(reference) for reference in image] for image in training],
    )
    np.testing.assert_allclose(without_eos[:1].numpy(), expected, rtol=0, atol=1e-6)


def test_token_ids_with_their_own_frequencies_equal_the_string_api():
    vocab_size = 12
    images = training_set(6, vocab_size, seed=6)
    generator = random.Random(7)
    samples = [random_ids(generator, vocab_size, (0, 9)) for _ in images]
    reference_ids, counts = batch_references(images)
    scorer = CiderD(reference_ids, counts, vocab_size, eos_id=EOS, pad_id=PAD)
    candidates = padded([sample + [EOS] for sample in samples], 12)

    scores = scorer.score(candidates, torch.arange(len(images)), scorer.prepare(reference_ids, counts))

    strings = cider_d([words(sample) for sample in samples], [[words(r) for r in image] for image in images])
    torch.testing.assert_close(scores, strings, rtol=0, atol=1e-12)
    assert scores.max() > 0


def test_the_largest_vocabulary_packs_four_grams_without_collisions():
    vocab_size = 55_107
    high, low = vocab_size - 1, 4
    references = torch.tensor([[high, low, high, low, high, EOS], [low, high, high, high, low, EOS]])
    counts = torch.tensor([1, 1])
    scorer = CiderD(references, counts, vocab_size, eos_id=EOS)
    candidates = torch.tensor([[high, low, high, high, low, EOS], [low, high, high, high, low, EOS]])
    scores = scorer.score(candidates, torch.arange(2), scorer.prepare(references, counts))
    expected = pycocoevalcap_fixed_df(
        [words(row[:-1]) for row in candidates.tolist()],
        [[words(row[:-1])] for row in references.tolist()],
        [[words(row[:-1])] for row in references.tolist()],
    )
    np.testing.assert_allclose(scores.numpy(), expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="at most 55,107 words"):
        CiderD(references, counts, vocab_size + 1, eos_id=EOS)


def test_metric_accumulates_updates_into_the_corpus_score_of_pycocoevalcap():
    expected_mean, _ = pycocoevalcap_scores(CANDIDATES, REFERENCES)
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert CiderDMetric().compute() == 0
    in_two = CiderDMetric()
    in_two.update(CANDIDATES[:3], REFERENCES[:3])
    in_two.update(CANDIDATES[3:], REFERENCES[3:])
    at_once = CiderDMetric()
    at_once.update(CANDIDATES, REFERENCES)
    assert in_two.compute().item() == pytest.approx(expected_mean, abs=1e-6)
    assert at_once.compute().item() == pytest.approx(expected_mean, abs=1e-6)
    # Document frequencies come from everything accumulated, not from each update.
    assert cider_d(CANDIDATES[:3], REFERENCES[:3]).mean().item() != pytest.approx(expected_mean, abs=1e-3)


def test_metric_states_of_two_ranks_merge_into_the_corpus_score():
    expected_mean, _ = pycocoevalcap_scores(CANDIDATES, REFERENCES)
    first, second = CiderDMetric(), CiderDMetric()
    first.update(CANDIDATES[:4], REFERENCES[:4])
    second.update(CANDIDATES[4:], REFERENCES[4:])
    assert all(state.dtype == torch.uint8 for state in second.captions)
    first.merge_state(second)
    assert first.compute().item() == pytest.approx(expected_mean, abs=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_scores_equal_cpu_scores():
    vocab_size = 14
    training = training_set(40, vocab_size, seed=8)
    generator = random.Random(9)
    samples = [random_ids(generator, vocab_size, (0, 10)) for _ in range(8)]
    candidates = padded([sample + [EOS] for sample in samples], 12)
    image = torch.arange(4).repeat_interleave(2)
    references = batch_references(training[:4])
    on_cpu = scorer_of(training, vocab_size)
    on_cuda = scorer_of(training, vocab_size).to("cuda")
    expected = on_cpu.score(candidates, image, on_cpu.prepare(*references))
    prepared = on_cuda.prepare(*(tensor.cuda() for tensor in references))
    scores = on_cuda.score(candidates.cuda(), image.cuda(), prepared)
    assert scores.device.type == "cuda"
    torch.testing.assert_close(scores.cpu(), expected, rtol=0, atol=1e-9)
    strings = cider_d(CANDIDATES, REFERENCES, device="cuda")
    np.testing.assert_allclose(strings.cpu().numpy(), pycocoevalcap_scores(CANDIDATES, REFERENCES)[1], atol=1e-6)
    assert math.isfinite(scores.sum().item())
