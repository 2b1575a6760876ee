"""Attention grounding on the built-in shapes data: does the decoder look at the object it names?

For every generated word that names a shape or a colour of an object present in the image, the word is
grounded when its strongest attention region (a cell of the 7x7 grid) overlaps the box of such an object.
The score is the share of grounded words; `grounding_chance` is the share a uniformly random region would
reach on the same words (the regions overlapping the named objects, over all regions).
"""

from __future__ import annotations

import math

from captioning.data.shapes import COLOURS, SHAPES
from captioning.evaluation.bootstrap import ImageStatistics, ratio_statistics


def _overlaps(cell: tuple[float, float, float, float], box: list[float]) -> bool:
    return min(cell[2], box[2]) > max(cell[0], box[0]) and min(cell[3], box[3]) > max(cell[1], box[1])


def grounding_image_statistics(
    predictions: list[dict], objects: dict[str, list[dict]], image_size: int
) -> tuple[ImageStatistics, int]:
    """Each image's grounded words, their chance and its words naming an object of the image, for `predictions`
    (as decode_images returns) against object boxes keyed by image file name; and the named words in all."""
    grounded, chance, named = [], [], []
    for prediction in predictions:
        image_grounded = image_named = 0
        image_chance = 0.0
        image_objects = objects[prediction["image"].rsplit("/", 1)[-1]]
        for word, weights in zip(prediction["generated"].split(), prediction["attention"]):
            if word not in SHAPES and word not in COLOURS:
                continue
            boxes = [obj["box"] for obj in image_objects if word in (obj["shape"], obj["colour"])]
            if not boxes:
                continue  # the word names nothing in this image: a caption error, not an attention one
            side = math.isqrt(len(weights))
            cell = image_size / side
            hits = [
                any(_overlaps((col * cell, row * cell, (col + 1) * cell, (row + 1) * cell), box) for box in boxes)
                for row in range(side)
                for col in range(side)
            ]
            strongest = max(range(len(weights)), key=weights.__getitem__)
            image_grounded += hits[strongest]
            image_chance += sum(hits) / len(hits)
            image_named += 1
        grounded.append(image_grounded)
        chance.append(image_chance)
        named.append(image_named)
    statistics = ratio_statistics(
        {"grounding": grounded, "grounding_chance": chance}, {"grounding": named, "grounding_chance": named}
    )
    return statistics, sum(named)


def grounding_score(predictions: list[dict], objects: dict[str, list[dict]], image_size: int) -> dict:
    """Grounding of `predictions` (as decode_images returns) against object boxes keyed by image file name: the
    share of grounded words, its chance level (None for both without a named word) and the words that count."""
    statistics, named_words = grounding_image_statistics(predictions, objects, image_size)
    return {**statistics.corpus(), "grounded_words": named_words}
