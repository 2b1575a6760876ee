"""The datamodule does its work in explicit calls only, and only for the splits it is asked for."""

from pathlib import Path

import pytest
import torch

from captioning.data.datamodule import CaptionDataModule
from captioning.data.images import ImageFolderDataset
from captioning.errors import DatasetNotFoundError
from captioning.model.encoder import ResNet50Encoder


def test_building_a_datamodule_reads_nothing(tmp_path):
    calls = []
    datamodule = CaptionDataModule(str(tmp_path / "nowhere"), dataset_builder=calls.append)
    assert datamodule.captions is None and datamodule.vocabulary is None and datamodule.feature_cache_path is None
    assert calls == []  # the built-in dataset is not generated either
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        datamodule.load_annotations()  # the first read, where the entry point asks for it
    assert calls == [tmp_path / "nowhere"]


def test_a_datamodule_of_one_split_encodes_and_serves_only_that_split(shapes_root, tmp_path):
    datamodule = CaptionDataModule(
        str(shapes_root),
        feature_cache_dir=str(tmp_path),
        num_workers=0,
        min_word_frequency=1,
        encoder=ResNet50Encoder(None, image_size=64),
        splits=["val"],
        generated=True,
    )
    datamodule.prepare_data()
    datamodule.setup()
    assert list(datamodule.datasets) == ["val"] and len(datamodule.datasets["val"]) == 2
    assert len(datamodule.images) == 2 and datamodule.images == sorted(datamodule.images)
    batch = next(iter(datamodule.val_dataloader()))
    assert batch["features"].shape == (2, 49, 2048) and len(batch["references"][0]) == 5
    images = ImageFolderDataset([Path(path) for path in batch["image_paths"]], datamodule.transform)
    with torch.no_grad():
        expected = datamodule.encoder(torch.stack([images[k][0] for k in range(2)]))  # each row is its image's
    torch.testing.assert_close(batch["features"].float(), expected, rtol=2e-3, atol=1e-2)
    assert datamodule.vocabulary is not None and len(datamodule.vocabulary) > 4  # from the training captions


def test_unknown_splits_are_refused(tmp_path):
    with pytest.raises(ValueError, match="splits must be some of"):
        CaptionDataModule(str(tmp_path), splits=["training"])
