"""Error bars by the bootstrap over images: each metric recomputed on resamples of the evaluated images.

Every corpus metric here is a function of a sum over images of per-image statistics: BLEU of its clipped n-gram
matches, n-gram counts and lengths, METEOR of its matcher's statistics, a mean (CIDEr-D, ROUGE-L, caption length)
of the scores and a count of images, a ratio (loss per word, attention per word) of two sums. A resample that draws
image i w_i times therefore only needs the weighted sum w @ rows: 1,000 resamples of 5,000 images are one matrix
product, not 1,000 runs of the scorers. The unit resampled is the image (the captions of one image are scored
together and are not independent); whatever was fitted on the whole set, such as CIDEr's document frequencies,
stays as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

# Cells of one block of resample counts (resamples x images): bounds memory on large evaluation sets.
_BLOCK_CELLS = 1 << 22


@dataclass(frozen=True)
class ImageStatistics:
    """Per-image statistics of some corpus metrics: the metrics of any multiset of the images are `combine` of the
    sum of their rows (an image drawn twice counts twice)."""

    names: tuple[str, ...]  # the metrics `combine` gives, in its columns' order
    rows: np.ndarray  # (N, K) float64, one row per image
    combine: Callable[[np.ndarray], np.ndarray]  # sums (R, K) -> metrics (R, M); NaN where a metric is undefined

    def corpus(self) -> dict[str, float | None]:
        """The metrics of all the images (None where undefined, e.g. a share of no words)."""
        values = self.combine(self.rows.sum(axis=0, keepdims=True))[0]  # (M,)
        return {name: None if np.isnan(value) else float(value) for name, value in zip(self.names, values)}

    def reordered(self, order: Sequence[int]) -> ImageStatistics:
        """The same statistics with its images in `order` (positions of the current rows)."""
        return ImageStatistics(self.names, self.rows[np.asarray(order, dtype=np.int64)], self.combine)


def _ratios(columns: int, sums: np.ndarray) -> np.ndarray:
    """The first `columns` sums (R, M) over the next `columns`, NaN where a denominator is 0."""
    numerators, denominators = sums[:, :columns], sums[:, columns:]
    quotient = np.full(numerators.shape, np.nan)
    return np.divide(numerators, denominators, out=quotient, where=denominators != 0)


def ratio_statistics(
    numerators: dict[str, Sequence[float]], denominators: dict[str, Sequence[float]]
) -> ImageStatistics:
    """Metrics that are a sum over images divided by another: `numerators[name]` and `denominators[name]` give each
    image's part (N,) of both, e.g. an image's summed word losses and its number of words."""
    names = tuple(numerators)
    if set(denominators) != set(names):
        raise ValueError("numerators and denominators must name the same metrics")
    columns = [np.asarray(numerators[name], dtype=np.float64) for name in names]
    columns += [np.asarray(denominators[name], dtype=np.float64) for name in names]
    return ImageStatistics(names, np.stack(columns, axis=1), partial(_ratios, len(names)))  # (N, 2M)


def mean_statistics(values: dict[str, Sequence[float]]) -> ImageStatistics:
    """Metrics that are the mean over images of a per-image value (N,), such as CIDEr-D or a caption's length."""
    return ratio_statistics(values, {name: np.ones(len(scores)) for name, scores in values.items()})


def resample_counts(images: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """How often each image is drawn (with replacement, `images` draws) in each of `resamples` resamples, as blocks
    (r, N) float64 of consecutive resamples; the same `seed` draws the same resamples."""
    generator = np.random.default_rng(seed)
    block = max(1, min(resamples, _BLOCK_CELLS // max(images, 1)))
    for start in range(0, resamples, block):
        count = min(block, resamples - start)
        drawn = generator.integers(0, images, size=(count, images))  # (r, N) image indices
        drawn += np.arange(count).reshape(-1, 1) * images  # each resample's draws in its own range
        yield np.bincount(drawn.ravel(), minlength=count * images).reshape(count, images).astype(np.float64)


def bootstrap_samples(
    evaluations: Sequence[Sequence[ImageStatistics]], resamples: int, seed: int
) -> list[dict[str, np.ndarray]]:
    """Each metric (R,) of each evaluation (a list of ImageStatistics over the same N images, in the same order) on
    the same `resamples` resamples of the images: applied to two models, their paired bootstrap."""
    sizes = {len(statistics.rows) for evaluation in evaluations for statistics in evaluation}
    if len(sizes) != 1:
        raise ValueError(f"every statistics must cover the same images, got {sorted(sizes)} images")
    [images] = sizes
    blocks: list[list[list[np.ndarray]]] = [[[] for _ in evaluation] for evaluation in evaluations]
    for counts in resample_counts(images, resamples, seed):  # (r, N)
        for evaluation, evaluation_blocks in zip(evaluations, blocks):
            for statistics, statistics_blocks in zip(evaluation, evaluation_blocks):
                statistics_blocks.append(statistics.combine(counts @ statistics.rows))  # (r, M)
    samples = []
    for evaluation, evaluation_blocks in zip(evaluations, blocks):
        metrics = {}
        for statistics, statistics_blocks in zip(evaluation, evaluation_blocks):
            values = np.concatenate(statistics_blocks)  # (R, M)
            metrics.update({name: values[:, column] for column, name in enumerate(statistics.names)})
        samples.append(metrics)
    return samples


def percentile_interval(samples: np.ndarray, confidence: float) -> list[float] | None:
    """The central `confidence` percentile interval [low, high] of bootstrap `samples` (R,); resamples where the
    metric is undefined (NaN) are left out, None if it is undefined in all."""
    defined = samples[~np.isnan(samples)]
    if defined.size == 0:
        return None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(defined, [tail, 100 - tail])
    return [float(low), float(high)]
