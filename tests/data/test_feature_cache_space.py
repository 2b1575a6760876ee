"""The feature cache is sized before it is built: a cache that cannot fit is refused before a byte is written."""

import logging
from collections import namedtuple

import pytest

from captioning.data import datamodule as datamodule_module
from captioning.data import feature_cache
from captioning.data.datamodule import CaptionDataModule
from captioning.data.feature_cache import cache_file_size
from captioning.errors import DiskSpaceError
from captioning.model.encoder import ResNetEncoder

DiskUsage = namedtuple("DiskUsage", "total used free")


def make_datamodule(root, cache_dir, grid: int) -> CaptionDataModule:
    return CaptionDataModule(
        str(root),
        feature_cache_dir=str(cache_dir),
        encoder=ResNetEncoder(None, grid=grid, image_size=64),
        num_workers=0,
        encode_batch_size=4,
        generated=True,
    )


def a_disk_with(free: int, monkeypatch) -> None:
    monkeypatch.setattr(feature_cache.shutil, "disk_usage", lambda path: DiskUsage(10**12, 10**12 - free, free))


def test_the_logged_size_is_the_size_of_the_file_built(shapes_root, tmp_path, monkeypatch, caplog):
    needed = 12 * 196 * 2048 * 2  # images x regions x features x float16, the header aside
    a_disk_with(needed + 4096, monkeypatch)  # room for the rows and a header of a page at most: it fits
    datamodule = make_datamodule(shapes_root, tmp_path, grid=14)
    with caplog.at_level(logging.INFO, logger="captioning.data.feature_cache"):
        datamodule.prepare_data()
    written = datamodule.feature_cache_path.stat().st_size
    assert needed < written < needed + 4096 and cache_file_size(12, 196, 2048) == written
    assert "12 images x 196 regions x 2048 features x 2 bytes (float16) = 9.6 MB" in caplog.text
    assert f"in {tmp_path}, where 9.6 MB are free" in caplog.text


def test_a_cache_that_cannot_fit_is_refused_before_anything_is_written(shapes_root, tmp_path, monkeypatch):
    a_disk_with(12 * 196 * 2048 * 2, monkeypatch)  # the rows would fit, the header would not

    def fail(*args, **kwargs):
        raise AssertionError("the build started")

    monkeypatch.setattr(datamodule_module, "build_feature_cache", fail)
    datamodule = make_datamodule(shapes_root, tmp_path, grid=14)
    with pytest.raises(DiskSpaceError) as error:
        datamodule.prepare_data()
    message = str(error.value)
    assert "needs 9.6 MB (12 images x 196 regions x 2048 features x 2 bytes)" in message
    assert f"{tmp_path} has only 9.6 MB free" in message
    for remedy in ("paths.cache_dir=", "model.encoder.grid=7 (49 regions instead of 196)", "data.cache_features=false"):
        assert remedy in message
    assert list(tmp_path.iterdir()) == []  # no partial file, no metadata


def test_a_7x7_cache_that_cannot_fit_does_not_suggest_the_grid_it_has(shapes_root, tmp_path, monkeypatch):
    a_disk_with(1000, monkeypatch)
    with pytest.raises(DiskSpaceError) as error:
        make_datamodule(shapes_root, tmp_path, grid=7).prepare_data()
    assert "model.encoder.grid" not in str(error.value) and "data.cache_features=false" in str(error.value)
