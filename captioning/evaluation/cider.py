"""CIDEr-D as tensor operations: pycocoevalcap's `Cider` for evaluation, and the self-critical training reward.

One code path scores token ids: document frequencies come from a set of references (the training set's for the
reward, the evaluated references' for `cider_d`), each batch's reference vectors are computed once and reused by
every sample, and candidates are matched to references by sorting and binary search over int64 n-gram keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from captioning.evaluation.metrics import coco_tokenize
from captioning.vocabulary import Vocabulary

# The key of "no n-gram here": larger than every real key, so it sorts to the end of each row.
SENTINEL = torch.iinfo(torch.int64).max
# Separators of the metric's byte states: whitespace to coco_tokenize, so never inside a tokenised caption.
_CAPTION_END, _IMAGE_END = "\x1f", "\x1e"


@dataclass
class ReferenceVectors:
    """The tf-idf n-gram vectors of a batch of images' references: computed once, reused by every candidate.

    Each image's `S` reference slots (the most references of any image; unused ones hold no n-gram) are merged
    into one sorted row per order, so that a candidate n-gram is found in all of them by one binary search.
    """

    keys: Tensor  # (I, n, L) the n-gram keys of all of an image's references, sorted, SENTINEL-padded
    values: Tensor  # (I, n, L, S) at each distinct key's first cell, its tf-idf weight in each slot; 0 elsewhere
    norms: Tensor  # (I, n, S)
    lengths: Tensor  # (I, S) float64: the length of the Gaussian length penalty
    counts: Tensor  # (I,) references per image


class CiderD:
    """CIDEr-D of token-id captions with document frequencies fixed by a set of references.

    Built from the training references, it is the self-critical reward (ICP's `CiderD`); built from the
    evaluated references, pycocoevalcap's `Cider`. Rows of token ids hold words only (no `<bos>`) and end at the
    first `eos_id` or `pad_id`; with `count_eos`, `<eos>` is a word, appended to every reference and kept in
    the candidates that emit it, so that a caption cut off at the maximum length matches fewer n-grams.
    """

    def __init__(
        self,
        references: Tensor,
        references_per_image: Tensor,
        vocab_size: int,
        eos_id: int | None = None,
        pad_id: int = 0,
        count_eos: bool = False,
        n: int = 4,
        sigma: float = 6.0,
        images_per_chunk: int = 4096,
    ) -> None:
        """Document frequencies of `references` (M, T), the first `references_per_image[0]` rows being the first
        image's and so on (each image has one or more): in how many images' references each n-gram occurs.

        Token ids lie in [0, vocab_size); `images_per_chunk` bounds the memory of counting a large training set.
        """
        if count_eos and eos_id is None:
            raise ValueError("count_eos=True needs the id of <eos>: pass eos_id")
        if (vocab_size + 1) ** n >= SENTINEL:
            raise ValueError(
                f"CIDEr-D packs each {n}-gram of word ids into one int64: at most "
                f"{math.floor(SENTINEL ** (1 / n)) - 1:,} words, got a vocabulary of {vocab_size}"
            )
        if len(references_per_image) == 0:
            raise ValueError("CIDEr-D needs the references of at least one image")
        self.vocab_size, self.eos_id, self.pad_id, self.count_eos = vocab_size, eos_id, pad_id, count_eos
        self.n, self.sigma = n, sigma
        self.log_images = math.log(len(references_per_image))
        # The n-grams of each image's references, once per image, a chunk of images at a time to bound memory.
        firsts = torch.cat([references_per_image.new_zeros(1), references_per_image.cumsum(0)]).tolist()
        distinct = []
        for start in range(0, len(references_per_image), images_per_chunk):
            end = min(start + images_per_chunk, len(references_per_image))
            keys, _, _ = self._reference_rows(references[firsts[start] : firsts[end]], references_per_image[start:end])
            distinct.append(keys[_run_starts(keys) & (keys != SENTINEL)])
        keys, counts = torch.unique(torch.cat(distinct), return_counts=True)
        # idf = log(images) - log(max(1, df)), as pycocoevalcap: an n-gram of one image weighs as much as an unseen
        # one, so the table keeps only those of two images or more (most n-grams occur once: a smaller table).
        common = counts > 1
        keys, counts = keys[common], counts[common]
        # The table ends with SENTINEL, so that a binary search never runs past it.
        self.document_keys = torch.cat([keys, keys.new_full((1,), SENTINEL)])  # (D + 1,)
        idf = self.log_images - torch.log(counts.double())  # (D,)
        self.document_idf = torch.cat([idf, idf.new_full((1,), self.log_images)])  # (D + 1,)

    def to(self, device: torch.device | str) -> CiderD:
        """Move the document-frequency table (a no-op where it already is); `prepare` does so for its inputs."""
        self.document_keys = self.document_keys.to(device)
        self.document_idf = self.document_idf.to(device)
        return self

    def prepare(self, references: Tensor, references_per_image: Tensor) -> ReferenceVectors:
        """The tf-idf vectors of a batch's references (M, T), grouped by image as in the constructor."""
        self.to(references.device)
        keys, slot, lengths = self._reference_rows(references, references_per_image)  # (I, n, L) twice, (I, S)
        values = _tfidf(keys, self._idf(keys), slot, lengths.size(1))  # (I, n, L, S)
        norms = torch.linalg.vector_norm(values, dim=2)  # (I, n, S)
        return ReferenceVectors(keys, values, norms, self._penalty_length(lengths), references_per_image)

    def score(self, candidates: Tensor, image: Tensor, references: ReferenceVectors) -> Tensor:
        """CIDEr-D (N,) float64 of candidates (N, T), candidate i scored against image `image[i]`'s references."""
        words, lengths = self._words(candidates, append_eos=False)
        keys = _ngram_keys(words, lengths, self.vocab_size + 1, self.n).sort(dim=-1).values  # (N, n, K)
        values = _tfidf(keys, self._idf(keys)).squeeze(-1)  # (N, n, K)
        norms = torch.linalg.vector_norm(values, dim=-1)  # (N, n)
        _, n, width, slots = references.values.shape
        reference_keys = references.keys[image]  # (N, n, L)
        # Each candidate n-gram's first cell among its image's references, or a cell with another key. In range:
        # every reference row ends with SENTINEL.
        cell = torch.searchsorted(reference_keys, keys)  # (N, n, K)
        matched = torch.gather(reference_keys, -1, cell) == keys  # (N, n, K)
        row = image.view(-1, 1, 1) * n + torch.arange(n, device=keys.device).view(1, -1, 1)  # (N, n, 1)
        reference_values = references.values.view(-1, slots).index_select(0, (row * width + cell).flatten())
        reference_values = reference_values.view(*keys.shape, slots).mul_(matched.unsqueeze(-1))  # (N, n, K, S)
        # Clipped dot product (N, n, S); repeated and padding cells weigh 0 on the candidate side (weights >= 0).
        dot = torch.minimum(values.unsqueeze(-1), reference_values).mul_(reference_values).sum(2)
        denominator = norms.unsqueeze(-1) * references.norms[image]  # (N, n, S)
        similarity = dot / torch.where(denominator == 0, 1.0, denominator)  # pycocoevalcap leaves 0/0 unscaled
        delta = self._penalty_length(lengths).unsqueeze(1) - references.lengths[image]  # (N, S)
        penalty = torch.exp(-(delta**2) / (2 * self.sigma**2))
        # Unused reference slots match nothing, so their similarity is 0 and the sum covers the real ones only.
        return (similarity.mean(1) * penalty).sum(-1) / references.counts[image] * 10.0  # (N,)

    def _words(self, tokens: Tensor, append_eos: bool) -> tuple[Tensor, Tensor]:
        """Each row's words, up to its first `<eos>` or `<pad>`, and their number (R,); `<eos>` counts as a word
        with `count_eos`: appended where `append_eos` (references), kept where emitted (candidates)."""
        end = tokens == self.pad_id
        if self.eos_id is not None:
            end |= tokens == self.eos_id
        lengths = (~end).long().cumprod(1).sum(1)  # (R,): words before the first end
        if not self.count_eos:
            return tokens, lengths
        if append_eos:
            tokens = torch.cat([tokens, torch.full_like(tokens[:, :1], self.pad_id)], dim=1)  # (R, T + 1)
            return tokens.scatter(1, lengths.unsqueeze(1), self.eos_id), lengths + 1
        last = tokens.size(1) - 1
        ends_with_eos = (tokens.gather(1, lengths.clamp(max=last).unsqueeze(1)).squeeze(1) == self.eos_id) & (
            lengths <= last
        )
        return tokens, lengths + ends_with_eos

    def _reference_rows(self, references: Tensor, references_per_image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The n-gram keys of each image's references merged into one sorted row per order (I, n, S * K), the slot
        (0..S-1) of the reference each cell comes from (I, n, S * K), and the references' word counts (I, S)."""
        words, lengths = self._words(references, append_eos=self.count_eos)
        images, slots = len(references_per_image), int(references_per_image.max())
        index = _slot_index(references_per_image, slots)  # (M,)
        slot_words = words.new_full((images * slots, words.size(1)), self.pad_id)
        slot_lengths = lengths.new_zeros(images * slots)
        slot_words[index], slot_lengths[index] = words, lengths
        keys = _ngram_keys(slot_words, slot_lengths, self.vocab_size + 1, self.n)  # (I * S, n, K)
        width = keys.size(-1)
        keys, cell = keys.view(images, slots, self.n, width).transpose(1, 2).reshape(images, self.n, -1).sort(dim=-1)
        return keys, torch.div(cell, width, rounding_mode="floor"), slot_lengths.view(images, slots)

    def _idf(self, keys: Tensor) -> Tensor:
        """The inverse document frequency (float64) of each key: log(images) - log(max(1, df))."""
        entry = torch.searchsorted(self.document_keys, keys)  # never past the end: the table ends with SENTINEL
        return torch.where(self.document_keys[entry] == keys, self.document_idf[entry], self.log_images)

    def _penalty_length(self, lengths: Tensor) -> Tensor:
        """The length pycocoevalcap's penalty compares: the number of bigrams (its `n == 1` indexes 2-grams)."""
        if self.n < 2:
            return torch.zeros_like(lengths, dtype=torch.float64)
        return (lengths - 1).clamp(min=0).double()


def _ngram_keys(words: Tensor, lengths: Tensor, base: int, n: int) -> Tensor:
    """Each n-gram of orders 1..n as one int64: its ids + 1 as the digits of a number in `base`.

    (R, n, T + 1): order o + 1's keys in [:, o], SENTINEL where no n-gram starts. Digits start at 1, so n-grams
    of different orders never share a key; the last column is always SENTINEL, so a search never runs past a row.
    """
    rows, length = words.shape
    digits = words + 1  # (R, T)
    keys = words.new_full((rows, n, length + 1), SENTINEL)
    starts = torch.arange(length, device=words.device)
    key = torch.zeros_like(digits)
    for order in range(min(n, length)):
        key = key[:, : length - order] * base + digits[:, order:]  # (R, T - order)
        outside = starts[: length - order] + order >= lengths.unsqueeze(1)
        keys[:, order, : length - order] = key.masked_fill(outside, SENTINEL)
    return keys


def _run_starts(keys: Tensor) -> Tensor:
    """True at the first cell of each run of equal keys in rows sorted along the last dimension."""
    starts = torch.ones_like(keys, dtype=torch.bool)
    starts[..., 1:] = keys[..., 1:] != keys[..., :-1]
    return starts


def _tfidf(keys: Tensor, idf: Tensor, slot: Tensor | int = 0, slots: int = 1) -> Tensor:
    """tf-idf weights (..., K, slots) float64 of the `slots` captions whose n-gram keys are merged into rows sorted
    along the last dimension (..., K), `slot` saying whose each cell is: how often the caption holds the n-gram
    times its `idf` (one a cell), at the first cell of the n-gram's run and 0 elsewhere."""
    columns = torch.arange(keys.size(-1), device=keys.device)
    run_firsts = torch.where(_run_starts(keys), columns, 0).cummax(-1).values  # (..., K)
    values = torch.zeros((*keys.shape[:-1], keys.size(-1) * slots), dtype=torch.float64, device=keys.device)
    values.scatter_add_(-1, run_firsts * slots + slot, idf.masked_fill(keys == SENTINEL, 0.0))
    return values.view(*keys.shape, slots)


def _slot_index(references_per_image: Tensor, slots: int) -> Tensor:
    """Each reference's row (M,) in an (I * slots) layout: image i's references in rows i * slots onwards."""
    images = torch.repeat_interleave(
        torch.arange(len(references_per_image), device=references_per_image.device), references_per_image
    )  # (M,)
    firsts = references_per_image.cumsum(0) - references_per_image  # (I,)
    return images * slots + torch.arange(len(images), device=images.device) - firsts[images]


def _ids(captions: list[list[str]], index: dict[str, int], device: torch.device | str) -> Tensor:
    """Captions of words as padded ids (R, T), ids from 1 (0 pads), new words added to `index`."""
    lengths = torch.from_numpy(np.array([len(caption) for caption in captions], dtype=np.int64))
    # Through numpy: torch.tensor reads a long list of ints several times slower.
    flat = np.array([index.setdefault(word, len(index) + 1) for caption in captions for word in caption], np.int64)
    padded = torch.zeros((len(captions), max(int(lengths.max()) if len(captions) else 0, 1)), dtype=torch.long)
    padded[torch.arange(padded.size(1)) < lengths.unsqueeze(1)] = torch.from_numpy(flat)
    return padded.to(device)


def _cider_d_of_words(
    candidates: list[list[str]], references: list[list[list[str]]], device: torch.device | str = "cpu"
) -> Tensor:
    """Per-image CIDEr-D (I,) of tokenised captions, document frequencies from `references`."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates for {len(references)} images' references: give one each")
    if not all(references):
        raise ValueError("every image needs at least one reference")
    index: dict[str, int] = {}
    reference_ids = _ids([reference for image in references for reference in image], index, device)  # (M, T)
    candidate_ids = _ids(candidates, index, device)  # (I, T')
    references_per_image = torch.tensor([len(image) for image in references], device=device)
    scorer = CiderD(reference_ids, references_per_image, vocab_size=len(index) + 1)
    image = torch.arange(len(candidates), device=device)
    return scorer.score(candidate_ids, image, scorer.prepare(reference_ids, references_per_image))


def cider_d(candidates: list[str], references: list[list[str]], device: torch.device | str = "cpu") -> Tensor:
    """Per-image CIDEr-D (I,) float64 of one candidate per image, equal to pycocoevalcap's `Cider` fed with
    `coco_tokenize`d captions (document frequencies from `references`)."""
    return _cider_d_of_words(
        [coco_tokenize(candidate).split() for candidate in candidates],
        [[coco_tokenize(reference).split() for reference in image] for image in references],
        device,
    )


class CiderDMetric(Metric):
    """Corpus CIDEr-D of everything accumulated (document frequencies from all of its references).

    Strings cannot be all-gathered, so the state holds each update's tokenised captions as UTF-8 bytes (uint8),
    concatenated across ranks and decoded in `compute`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("captions", default=[], dist_reduce_fx="cat")

    def update(self, candidates: list[str], references: list[list[str]]) -> None:
        """Add one candidate per image with that image's references."""
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates for {len(references)} images' references: give one each")
        if not all(references):
            raise ValueError("every image needs at least one reference")
        if not candidates:
            return
        text = "".join(
            _CAPTION_END.join([coco_tokenize(candidate)] + [coco_tokenize(reference) for reference in image])
            + _IMAGE_END
            for candidate, image in zip(candidates, references)
        )
        self.captions.append(torch.frombuffer(bytearray(text.encode()), dtype=torch.uint8).to(self.device))

    def compute(self) -> Tensor:
        """The mean of the per-image scores, as pycocoevalcap's corpus CIDEr; 0 before any update."""
        text = bytes(dim_zero_cat(self.captions).cpu().numpy()).decode() if len(self.captions) else ""
        images = [record.split(_CAPTION_END) for record in text.split(_IMAGE_END)[:-1]]
        if not images:
            return torch.tensor(0.0, dtype=torch.float64, device=self.device)
        candidates = [captions[0].split() for captions in images]
        references = [[reference.split() for reference in captions[1:]] for captions in images]
        return _cider_d_of_words(candidates, references, self.device).mean()


class CiderReward:
    """The self-critical reward: CIDEr-D of generated token ids against their image's references, with the
    document frequencies of the training references (fitted once, the same on every rank), as ICP trains.
    `count_eos`: `<eos>` is a word, so that a caption cut off at the maximum length scores lower."""

    def __init__(self, count_eos: bool = False) -> None:
        self.count_eos = count_eos
        self.scorer: CiderD | None = None

    def fit(self, references: list[list[list[int]]], vocabulary: Vocabulary) -> None:
        """Document frequencies of the training `references`: each image's encoded captions (`<bos>` ... `<eos>`)."""
        self.pad_id = vocabulary.pad_id
        rows = [torch.tensor(reference[1:]) for image in references for reference in image]  # words and <eos>
        self.scorer = CiderD(
            pad_sequence(rows, batch_first=True, padding_value=vocabulary.pad_id),
            torch.tensor([len(image) for image in references]),
            vocab_size=len(vocabulary),
            eos_id=vocabulary.eos_id,
            pad_id=vocabulary.pad_id,
            count_eos=self.count_eos,
        )

    def __call__(self, captions: Tensor, image: Tensor, references: Tensor) -> Tensor:
        """CIDEr-D (N,) of generated captions (N, L) against the references (B, references, T) of their images
        `image` (N,); each image's reference vectors are computed once for all of its captions."""
        if self.scorer is None:
            raise RuntimeError("CiderReward.fit must see the training references before scoring")
        present = references[:, :, 0] != self.pad_id  # (B, references)
        prepared = self.scorer.prepare(references[present][:, 1:], present.sum(dim=1))  # without <bos>
        return self.scorer.score(captions, image, prepared)
