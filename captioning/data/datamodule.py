"""LightningDataModule: annotations -> vocabulary -> feature cache -> DataLoaders for each split."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader
from torchvision import transforms
from tqdm.auto import tqdm

from captioning.data.datasets import (
    CachedFeatures,
    CaptionPairs,
    CollatePairs,
    CollateReferences,
    ImageReferences,
    ImagesOnTheFly,
)
from captioning.data.feature_cache import (
    build_feature_cache,
    cache_damage,
    check_cache_fits,
    feature_cache_path,
    image_fingerprints,
    image_list_digest,
    remove_replaced_caches,
    unreadable_images,
)
from captioning.data.images import UNREADABLE_IMAGE_ERRORS, ImageFolderDataset, image_transform, load_image
from captioning.data.readers import SPLITS, read_annotations
from captioning.errors import ConfigError, EmptySplitError
from captioning.folders import writable_folder
from captioning.vocabulary import Vocabulary, tokenize

log = logging.getLogger(__name__)


class CaptionDataModule(L.LightningDataModule):
    """Captioned images of one dataset root, in any supported layout, with their cached encoder features.

    Nothing is read at construction. `load_annotations()` reads the captions (the entry points call it to
    build the vocabulary before the model), `prepare_data()` builds the feature cache, `setup()` the datasets.
    """

    def __init__(
        self,
        root: str,
        format: str = "auto",
        dataset_builder: Callable[[Path], object] | None = None,
        generated: bool = False,
        restval: str = "train",
        min_word_frequency: int = 5,
        max_caption_length: int = 20,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 2,
        cache_features: bool = True,
        feature_cache_dir: str | None = None,
        encode_batch_size: int = 32,
        encoder: torch.nn.Module | None = None,
        splits: Sequence[str] = SPLITS,
        train_per_image: bool = False,
    ) -> None:
        """`encoder` (with an `identity` naming its weights and an `image_size`, which the image transform
        follows) encodes the images into the feature cache; the entry point builds it once and hands the same
        one to the model (it may set it after construction, before `prepare_data`). `splits` limits the work
        to those splits: an evaluation encodes only the images it scores. `train_per_image`: training batches
        hold images with all their references, as self-critical training wants, instead of (image, caption)
        pairs. `generated`: `root` holds the built-in dataset, whose generated annotation file is read only then
        (a Flickr run never reads one). `restval`: Karpathy's restval images (COCO) are trained on (`train`)
        or left out (`drop`)."""
        super().__init__()
        self.root = Path(root)
        self.format = format
        self.dataset_builder = dataset_builder
        self.generated = generated
        self.restval = restval
        self.min_word_frequency = min_word_frequency
        self.max_caption_length = max_caption_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.cache_features = cache_features
        self.feature_cache_dir = Path(feature_cache_dir) if feature_cache_dir else self.root / "feature_cache"
        self.encode_batch_size = encode_batch_size
        self.encoder = encoder
        unknown = set(splits) - set(SPLITS)
        if unknown or not splits:
            raise ValueError(f"splits must be some of {SPLITS}, got {list(splits)}")
        self.splits = tuple(splits)
        self.train_per_image = train_per_image
        self.captions: pd.DataFrame | None = None  # one row per caption: image, split, caption (all splits)
        self.vocabulary: Vocabulary | None = None  # built from the training captions, or a checkpoint's
        self.images: list[str] = []  # the rows of the feature source, in order (relative paths)
        self.feature_cache_path: Path | None = None
        self._fingerprints: dict[str, str] = {}  # image -> size and hash of sampled bytes, for the cache key
        self.datasets: dict[str, torch.utils.data.Dataset] = {}
        self.skipped_images: list[dict] = []  # {"image", "reason"} of every image left out, for the run's report
        self._dataset_generated = False

    @property
    def transform(self) -> transforms.Compose:
        """The images' transform: resized to the encoder's `image_size` (model.encoder.image_size), normalised."""
        if self.encoder is None:
            raise ValueError("The images' transform follows the encoder: pass encoder= to CaptionDataModule")
        return image_transform(self.encoder.image_size)

    # --- annotations and vocabulary -------------------------------------------------------------------
    def _generate_dataset(self) -> None:
        if self.dataset_builder is not None and not self._dataset_generated:
            self.dataset_builder(self.root)
        self._dataset_generated = True

    def load_annotations(self) -> pd.DataFrame:
        """Read the captions (once) and keep those of the images that exist on disk; missing images are
        reported and listed in `skipped_images`."""
        if self.captions is not None:
            return self.captions
        self._generate_dataset()
        table = read_annotations(self.root, self.format, self.generated, self.restval)
        self.skipped_images += table.skipped_images
        captions = table.captions
        exists = {image: (self.root / image).is_file() for image in captions["image"].unique()}
        missing = sorted(image for image, found in exists.items() if not found)
        if missing:
            log.warning(
                f"{len(missing)} image(s) named in {table.annotation_file.name} are missing and skipped "
                f"(first: {', '.join(missing[:5])})"
            )
            captions = captions[captions["image"].map(exists)].reset_index(drop=True)
            self.skipped_images += [{"image": image, "reason": "missing file"} for image in missing]
        counts = captions.drop_duplicates("image")["split"].value_counts()
        log.info(
            f"{self.root} ({table.format}): {captions['image'].nunique()} images, {len(captions)} captions; "
            + ", ".join(f"{split} {counts.get(split, 0)} images" for split in SPLITS)
        )
        self._check_training_splits(captions)
        self.captions = captions
        return captions

    def _check_training_splits(self, captions: pd.DataFrame) -> None:
        """Refuse to train without a training image, and say what a run without validation images does;
        `captions` are those left after the skipped images."""
        if "train" not in self.splits:
            return
        images = captions.drop_duplicates("image")["split"].value_counts()
        sizes = ", ".join(f"{split} {images.get(split, 0)}" for split in SPLITS) + " images"
        if self.skipped_images:
            sizes += f"; {len(self.skipped_images)} image(s) were skipped, see the warnings above"
        if not images.get("train", 0):
            raise EmptySplitError(
                f"The train split of {self.root} has no usable image ({sizes}), so there is nothing to train on. "
                "Annotations without a split of their own put one image in test and one in val (a tenth of the "
                "images each, at most 1,000 and 1,014) before train gets any: give at least three images, or "
                "a Karpathy JSON (or Flickr8k's *Images.txt lists) whose split has train images."
            )
        if "val" in self.splits and not images.get("val", 0):
            log.warning(
                f"The val split of {self.root} has no usable image ({sizes}): this run will not validate, so it "
                "logs no val loss or BLEU-4 and writes no best.ckpt; last.ckpt is its model (evaluate_after "
                "evaluates it). Give the split val images to validate."
            )

    def _training_captions(self) -> pd.Series:
        captions = self.load_annotations()
        return captions.loc[captions["split"] == "train", "caption"]

    def build_vocabulary(self) -> Vocabulary:
        """The vocabulary of the training captions (words seen at least `min_word_frequency` times)."""
        return Vocabulary.build(self._training_captions(), self.min_word_frequency)

    def vocabulary_coverage(self, vocabulary: Vocabulary) -> float:
        """Share of the words of the training captions that `vocabulary` knows."""
        words = [word for caption in self._training_captions() for word in tokenize(caption)]
        return sum(word in vocabulary.index for word in words) / max(len(words), 1)

    # --- feature cache -----------------------------------------------------------------------------------
    def _cache_path(self, images: list[str]) -> Path:
        """Keyed by the images (names, sizes and hashes of sampled bytes: see `image_fingerprint`), the encoder
        and the transform. Each image is fingerprinted once, however many caches are looked up."""
        if self.encoder is None:
            raise ValueError("A feature cache needs the encoder: pass encoder= to CaptionDataModule")
        new = [image for image in images if image not in self._fingerprints]
        self._fingerprints.update(zip(new, image_fingerprints([self.root / image for image in new])))
        files = [f"{image}:{self._fingerprints[image]}" for image in images]
        return feature_cache_path(self.feature_cache_dir, files, self.encoder.identity, repr(self.transform))

    def locate_features(self) -> Path | None:
        """Set and return `feature_cache_path` (None without a cache) and `images`, the rows of the features:
        the cache of every image when all splits are used or that cache exists (a training run built it),
        else one of `splits` alone."""
        if self.images:
            return self.feature_cache_path
        captions = self.load_annotations()
        every_image = sorted(captions["image"].unique())
        used_images = sorted(captions.loc[captions["split"].isin(self.splits), "image"].unique())
        if not self.cache_features:
            self.images = used_images
            return None
        complete_cache = self._cache_path(every_image)
        if used_images == every_image or complete_cache.is_file():
            self.images, self.feature_cache_path = every_image, complete_cache
        else:
            self.images, self.feature_cache_path = used_images, self._cache_path(used_images)
        return self.feature_cache_path

    def prepare_data(self) -> None:
        """Generate the built-in dataset if needed, then encode every image once into the feature cache."""
        self._generate_dataset()
        if not self.cache_features:
            return
        path = self.locate_features()
        if path.is_file():
            damage = cache_damage(path, len(self.images))
            if damage is None:
                log.info(f"Reusing feature cache {path}")
                return
            log.warning(f"The feature cache {path} is damaged ({damage}): rebuilding it")
        writable_folder(self.feature_cache_dir, "paths.cache_dir")
        check_cache_fits(self.feature_cache_dir, len(self.images), self.encoder.regions, self.encoder.feature_dim)
        paths = [self.root / image for image in self.images]
        metadata = {
            "encoder": self.encoder.identity,
            "transform": repr(self.transform),
            "dataset_root": str(self.root),
            "num_images": len(paths),
            "image_names": image_list_digest(self.images),
        }
        build_feature_cache(
            path,
            self.encoder,
            ImageFolderDataset(paths, self.transform),
            metadata,
            batch_size=self.encode_batch_size,
            num_workers=self.num_workers,
            device="cuda" if torch.cuda.is_available() else "cpu",
        )
        remove_replaced_caches(path)

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
        """The datasets of `splits`, with the image index of every caption into the feature rows."""
        if self.datasets:
            return  # already set up (Lightning calls setup once per stage)
        self.locate_features()
        if self.vocabulary is None:
            self.vocabulary = self.build_vocabulary()
        source = self._source()
        encode = functools.partial(self.vocabulary.encode, max_length=self.max_caption_length)
        row_of = {image: row for row, image in enumerate(self.images)}
        captions = self._readable_captions()
        if len(captions) < len(self.captions):
            self._check_training_splits(captions)
        captions = captions[captions["split"].isin(self.splits)]
        captions = captions.assign(image_index=captions["image"].map(row_of))
        if "train" in self.splits and not self.train_per_image:
            train = captions[captions["split"] == "train"]
            self.datasets["train"] = CaptionPairs(
                train["image_index"].tolist(), [encode(caption) for caption in train["caption"]], source
            )
        for split in ("train", "val", "test"):
            if split not in self.splits or split in self.datasets:
                continue
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
        return DataLoader(
            self.datasets[split],
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
        collate = CollateReferences if self.train_per_image else CollatePairs
        return self._loader("train", self.batch_size, self._collate(collate, "train"), shuffle=True)

    def reference_ids(self, split: str) -> list[list[list[int]]]:
        """Every image of `split` with its encoded references (`<bos>` ... `<eos>`): what a reward is fitted on."""
        dataset = self.datasets[split]
        if not isinstance(dataset, ImageReferences):  # the train split as (image, caption) pairs
            raise ConfigError(
                f"The {split} split is read as (image, caption) pairs: a reward needs every image's references, "
                "with data.train_per_image=true (as experiment=scst sets)."
            )
        return [[caption.tolist() for caption in image] for image in dataset.captions]

    def eval_dataloader(self, split: str) -> DataLoader:
        """Each image of `split` once, with all its references, in a fixed order."""
        return self._loader(split, self.eval_batch_size, self._collate(CollateReferences, split), shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")
