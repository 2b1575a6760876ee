"""The images a demo offers to caption: a folder of the user's, or the test split of the data a checkpoint was
trained on."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate

from captioning.errors import CaptioningError
from captioning.inference.captioner import find_images
from captioning.model.checkpoint import checkpoint_data_config

log = logging.getLogger(__name__)


def test_images(checkpoint: dict, limit: int) -> list[Path]:
    """The first `limit` test images (in annotation order) of the data `checkpoint` was trained on; the built-in
    data is generated again if it is gone, as evaluate.py does. A dataset that is gone raises its error."""
    datamodule = instantiate(checkpoint_data_config(checkpoint), splits=["test"], _convert_="all")
    captions = datamodule.load_annotations()
    images = captions.loc[captions["split"] == "test", "image"].drop_duplicates().tolist()
    return [datamodule.root / image for image in images[:limit]]


def example_images(checkpoint: dict, folder: Path | None, limit: int) -> list[Path]:
    """The first `limit` images of `folder`, or without one the checkpoint's test images; none (with a warning)
    when its data is gone, so that the page still works on uploads."""
    if folder is not None:
        return find_images(folder)[:limit]
    if limit == 0:
        return []
    try:
        return test_images(checkpoint, limit)
    except CaptioningError as error:
        log.warning(f"No test images to offer ({error}) Pass demo.examples=<a folder of images> to offer some.")
        return []
