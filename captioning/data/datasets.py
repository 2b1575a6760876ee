"""Torch datasets: (image, caption) pairs for training, (image, all references) for evaluation."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset
from torchvision import transforms

from captioning.data.feature_cache import read_cache_header
from captioning.data.images import ImageFolderDataset
from captioning.errors import FeatureCacheError

log = logging.getLogger(__name__)


class CachedFeatures:
    """Region features read row by row from the cache file with positioned reads.

    Unlike a memory map, whose touched pages stay in the process's resident memory (an epoch over
    Flickr30k would touch all 6.4 GB), read rows live only in the kernel's page cache, which it can evict.
    """

    batch_key = "features"

    def __init__(self, path: Path) -> None:
        self.path = path
        shape, dtype, self.data_offset = read_cache_header(path)
        self.row_shape, self.dtype = shape[1:], dtype
        self.row_bytes = int(np.prod(self.row_shape)) * dtype.itemsize
        self._file_descriptor: int | None = None  # opened lazily, once per DataLoader worker

    def __getitem__(self, image_index: int) -> torch.Tensor:
        if self._file_descriptor is None:
            self._file_descriptor = os.open(self.path, os.O_RDONLY)
        raw = os.pread(self._file_descriptor, self.row_bytes, self.data_offset + image_index * self.row_bytes)
        if len(raw) != self.row_bytes:  # checked when the run started: the file was cut short since
            raise FeatureCacheError(
                f"The feature cache {self.path} ends before row {image_index}: it was truncated while in use. Delete "
                "it (with its .json) and run again to rebuild it."
            )
        row = np.frombuffer(raw, dtype=self.dtype).reshape(self.row_shape)
        # As stored (float16): half the bytes to collate and copy to a GPU; the model takes them as float32.
        return torch.from_numpy(row.copy())  # (R, D)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file_descriptor": None}  # each worker process opens its own


class ImagesOnTheFly:
    """Transformed images, for a run that encodes every batch instead of reading a cache."""

    batch_key = "images"

    def __init__(self, paths: list[Path], transform: transforms.Compose) -> None:
        self.images = ImageFolderDataset(paths, transform)

    def __getitem__(self, image_index: int) -> torch.Tensor:
        pixels, readable = self.images[image_index]  # (3, S, S)
        if not readable:  # found readable before training, broken since: a blank image stands in
            log.warning(f"Unreadable image {self.images.paths[image_index]}: a blank image stands in for it")
        return pixels


class CaptionPairs(Dataset):
    """One sample per training caption: the image's input and the encoded caption."""

    def __init__(self, image_indices: list[int], captions: list[list[int]], source: CachedFeatures | ImagesOnTheFly):
        self.image_indices = image_indices
        self.captions = [torch.tensor(caption) for caption in captions]
        self.source = source

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict:
        return {"inputs": self.source[self.image_indices[index]], "caption": self.captions[index]}


class ImageReferences(Dataset):
    """One sample per image with every reference caption, encoded (for the loss) and raw (for the metrics)."""

    def __init__(
        self,
        image_indices: list[int],
        image_paths: list[str],
        captions: list[list[list[int]]],
        references: list[list[str]],
        source: CachedFeatures | ImagesOnTheFly,
    ) -> None:
        self.image_indices = image_indices
        self.image_paths = image_paths
        self.captions = [[torch.tensor(caption) for caption in image] for image in captions]
        self.references = references
        self.source = source

    def __len__(self) -> int:
        return len(self.image_indices)

    def __getitem__(self, index: int) -> dict:
        return {
            "inputs": self.source[self.image_indices[index]],
            "captions": self.captions[index],
            "references": self.references[index],
            "image_path": self.image_paths[index],
        }


class CollatePairs:
    """Stacks inputs under the source's key and pads captions to (B, T) with `<pad>`."""

    def __init__(self, batch_key: str, pad_id: int) -> None:
        self.batch_key = batch_key
        self.pad_id = pad_id

    def __call__(self, samples: list[dict]) -> dict:
        return {
            self.batch_key: torch.stack([sample["inputs"] for sample in samples]),
            "captions": pad_sequence([s["caption"] for s in samples], batch_first=True, padding_value=self.pad_id),
        }


class CollateReferences(CollatePairs):
    """Stacks inputs and pads every image's references to (B, references, T) with `<pad>`."""

    def __call__(self, samples: list[dict]) -> dict:
        max_references = max(len(sample["captions"]) for sample in samples)
        max_length = max(len(caption) for sample in samples for caption in sample["captions"])
        captions = torch.full((len(samples), max_references, max_length), self.pad_id, dtype=torch.long)
        for row, sample in enumerate(samples):
            for column, caption in enumerate(sample["captions"]):
                captions[row, column, : len(caption)] = caption
        return {
            self.batch_key: torch.stack([sample["inputs"] for sample in samples]),
            "captions": captions,  # (B, references, T)
            "references": [sample["references"] for sample in samples],
            "image_paths": [sample["image_path"] for sample in samples],
        }
