"""LightningDataModule: annotations -> vocabulary -> feature cache -> DataLoaders for each split."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from captioning.data.datasets import (
    CachedFeatures,
    CaptionPairs,
    CollatePairs,
    CollateReferences,
    ImageReferences,
    ImagesOnTheFly,
)
from captioning.data.feature_cache import build_feature_cache, feature_cache_path, unreadable_images
from captioning.data.images import UNREADABLE_IMAGE_ERRORS, ImageFolderDataset, image_transform, load_image
from captioning.data.readers import read_annotations
from captioning.data.vocabulary import Vocabulary, tokenize
from captioning.model.encoder import ResNet50Encoder, encoder_identity

log = logging.getLogger(__name__)


class CaptionDataModule(L.LightningDataModule):
    """Captioned images of one dataset root, in any supported layout, with their cached encoder features."""

    def __init__(
        self,
        root: str,
        format: str = "auto",
        dataset_builder: Callable[[Path], None] | None = None,
        min_word_frequency: int = 5,
        max_caption_length: int = 20,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 2,
        cache_features: bool = True,
        feature_cache_dir: str | None = None,
        encoder_weights: str | None = "IMAGENET1K_V1",
        encoder_random_init_seed: int = 0,
        image_size: int = 224,
        encode_batch_size: int = 32,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.format = format
        self.dataset_builder = dataset_builder
        self.min_word_frequency = min_word_frequency
        self.max_caption_length = max_caption_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.cache_features = cache_features
        self.feature_cache_dir = Path(feature_cache_dir) if feature_cache_dir else self.root / "feature_cache"
        self.encoder_weights = encoder_weights
        self.encoder_random_init_seed = encoder_random_init_seed
        self.transform = image_transform(image_size)
        self.encode_batch_size = encode_batch_size
        self._vocabulary: Vocabulary | None = None
        self.datasets: dict[str, torch.utils.data.Dataset] = {}
        self.skipped_images: list[dict] = []  # {"image", "reason"} of every image left out, for the run's report

    # --- annotations and vocabulary -------------------------------------------------------------------
    def _ensure_dataset(self) -> None:
        if self.dataset_builder is not None:
            self.dataset_builder(self.root)

    @functools.cached_property
    def captions(self) -> pd.DataFrame:
        """One row per caption (image, split, caption, image_index) of the images that exist on disk."""
        self._ensure_dataset()
        table = read_annotations(self.root, self.format)
        captions = table.captions
        exists = {image: (self.root / image).is_file() for image in captions["image"].unique()}
        missing = sorted(image for image, found in exists.items() if not found)
        if missing:
            log.warning(
                f"{len(missing)} image(s) named in {table.annotation_file.name} are missing and skipped "
                f"(first: {', '.join(missing[:5])})"
            )
            captions = captions[captions["image"].map(exists)]
            self.skipped_images += [{"image": image, "reason": "missing file"} for image in missing]
        images = sorted(captions["image"].unique())
        index_of = {image: position for position, image in enumerate(images)}
        captions = captions.assign(image_index=captions["image"].map(index_of)).reset_index(drop=True)
        counts = captions.drop_duplicates("image")["split"].value_counts()
        log.info(
            f"{self.root} ({table.format}): {len(images)} images, {len(captions)} captions; "
            + ", ".join(f"{split} {counts.get(split, 0)} images" for split in ("train", "val", "test"))
        )
        return captions

    @functools.cached_property
    def images(self) -> list[str]:
        """Every image of the dataset (relative paths), in image_index order: the rows of the feature cache."""
        return sorted(self.captions["image"].unique())

    @property
    def vocabulary(self) -> Vocabulary:
        """Built from the training captions only, unless a checkpoint's vocabulary was set."""
        if self._vocabulary is None:
            train_captions = self.captions.loc[self.captions["split"] == "train", "caption"]
            self._vocabulary = Vocabulary.build(train_captions, self.min_word_frequency)
        return self._vocabulary

    def vocabulary_coverage(self, vocabulary: Vocabulary) -> float:
        """Share of the words of the training captions that `vocabulary` knows."""
        words = [
            word
            for caption in self.captions.loc[self.captions["split"] == "train", "caption"]
            for word in tokenize(caption)
        ]
        return sum(word in vocabulary.index for word in words) / max(len(words), 1)

    @vocabulary.setter
    def vocabulary(self, vocabulary: Vocabulary) -> None:
        self._vocabulary = vocabulary

    # --- feature cache -----------------------------------------------------------------------------------
    @functools.cached_property
    def feature_cache_path(self) -> Path:
        """Keyed by the images (names, sizes and modification times), the encoder and the transform."""
        identity = encoder_identity(self.encoder_weights, self.encoder_random_init_seed)
        files = []
        for image in self.images:
            status = (self.root / image).stat()
            files.append(f"{image}:{status.st_size}:{status.st_mtime_ns}")
        return feature_cache_path(self.feature_cache_dir, files, identity, repr(self.transform))

    def prepare_data(self) -> None:
        """Generate the built-in dataset if needed, then encode every image once into the feature cache."""
        self._ensure_dataset()
        if not self.cache_features:
            return
        path = self.feature_cache_path
        if path.is_file():
            log.info(f"Reusing feature cache {path}")
            return
        encoder = ResNet50Encoder(self.encoder_weights, self.encoder_random_init_seed)
        paths = [self.root / image for image in self.images]
        metadata = {
            "encoder": encoder.identity,
            "transform": repr(self.transform),
            "dataset_root": str(self.root),
            "num_images": len(paths),
        }
        build_feature_cache(
            path,
            encoder,
            ImageFolderDataset(paths, self.transform),
            metadata,
            batch_size=self.encode_batch_size,
            num_workers=self.num_workers,
            device="cuda" if torch.cuda.is_available() else "cpu",
        )

    # --- datasets ------------------------------------------------------------------------------------------
    def _source(self) -> CachedFeatures | ImagesOnTheFly:
        if self.cache_features:
            return CachedFeatures(self.feature_cache_path)
        return ImagesOnTheFly([self.root / image for image in self.images], self.transform)

    def _unreadable_images(self) -> list[str]:
        """Images that cannot be decoded: as the cache build found them, or, without a cache, by decoding
        each image once at a small scale."""
        if self.cache_features:
            return [self.images[position] for position in unreadable_images(self.feature_cache_path)]
        unreadable = []
        for image in tqdm(self.images, desc="Checking images", unit="image"):
            try:
                load_image(self.root / image, draft_size=(64, 64))
            except UNREADABLE_IMAGE_ERRORS:
                unreadable.append(image)
        return unreadable

    def _readable_captions(self) -> pd.DataFrame:
        """The captions of the images that can be read; the others are reported and left out."""
        unreadable = self._unreadable_images()
        if unreadable:
            log.warning(
                f"{len(unreadable)} image(s) could not be read (truncated, empty or not an image) and are "
                f"skipped with their captions (first: {', '.join(unreadable[:5])})"
            )
            self.skipped_images += [{"image": image, "reason": "unreadable image"} for image in unreadable]
        return self.captions[~self.captions["image"].isin(set(unreadable))]

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return  # already set up (Lightning calls setup once per stage)
        source = self._source()
        vocabulary = self.vocabulary
        encode = functools.partial(vocabulary.encode, max_length=self.max_caption_length)
        captions = self._readable_captions()
        train = captions[captions["split"] == "train"]
        self.datasets["train"] = CaptionPairs(
            train["image_index"].tolist(), [encode(caption) for caption in train["caption"]], source
        )
        for split in ("val", "test"):
            per_image = captions[captions["split"] == split].groupby("image_index", sort=True)
            references = per_image["caption"].agg(list)
            self.datasets[split] = ImageReferences(
                references.index.tolist(),
                [str(self.root / image) for image in per_image["image"].first()],
                [[encode(caption) for caption in image] for image in references],
                references.tolist(),
                source,
            )

    def _loader(self, split: str, batch_size: int, collate: CollatePairs, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        if len(dataset) == 0:
            log.warning(f"The {split} split of {self.root} is empty.")
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate,
            pin_memory=torch.cuda.is_available(),
        )

    def _collate(self, kind: type[CollatePairs], split: str) -> CollatePairs:
        return kind(self.datasets[split].source.batch_key, self.vocabulary.pad_id)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, self._collate(CollatePairs, "train"), shuffle=True)

    def eval_dataloader(self, split: str) -> DataLoader:
        """Each image of `split` once, with all its references, in a fixed order."""
        return self._loader(split, self.eval_batch_size, self._collate(CollateReferences, split), shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")
