import json
import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

from captioning.data import datamodule as datamodule_module
from captioning.data.datamodule import CaptionDataModule
from captioning.data.feature_cache import image_fingerprint
from captioning.data.images import ImageFolderDataset, load_image
from captioning.model.encoder import ResNet50Encoder


class NamedEncoder:
    """Stands in for an encoder where only its name (what the cache key holds) matters."""

    image_size = 64

    def __init__(self, identity: str) -> None:
        self.identity = identity


def make_datamodule(root, cache_dir, image_size: int = 64, **overrides) -> CaptionDataModule:
    settings = dict(
        root=str(root),
        feature_cache_dir=str(cache_dir),
        encoder=ResNet50Encoder(None, image_size=image_size),
        num_workers=0,
        min_word_frequency=1,
        encode_batch_size=4,
        generated=True,  # the built-in dataset's root
    )
    return CaptionDataModule(**{**settings, **overrides})


def test_cache_holds_the_encoder_features_as_float16(shapes_root, tmp_path):
    datamodule = make_datamodule(shapes_root, tmp_path)
    datamodule.prepare_data()

    features = np.load(datamodule.feature_cache_path)  # a plain .npy file, as numpy itself reads it
    assert features.dtype == np.float16 and features.shape == (12, 49, 2048)  # 64x64 -> 2x2, pooled to 7x7
    dataset = ImageFolderDataset([shapes_root / image for image in datamodule.images], datamodule.transform)
    images = torch.stack([dataset[k][0] for k in (0, 5)])  # (image, readable) pairs
    with torch.no_grad():
        expected = ResNet50Encoder(None)(images)
    torch.testing.assert_close(torch.from_numpy(features[[0, 5]].astype(np.float32)), expected, rtol=2e-3, atol=1e-2)


def test_cache_is_reused_by_a_later_run(shapes_root, tmp_path, monkeypatch):
    make_datamodule(shapes_root, tmp_path).prepare_data()

    def fail(*args, **kwargs):
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr(datamodule_module, "build_feature_cache", fail)
    make_datamodule(shapes_root, tmp_path).prepare_data()  # same images, encoder and transform: no rebuild


@pytest.mark.parametrize(
    "change",
    [
        {"image_size": 96},
        {"encoder": NamedEncoder("resnet50:IMAGENET1K_V2")},
        {"encoder": NamedEncoder("resnet50:random(seed=1)")},
    ],
)
def test_cache_key_changes_with_encoder_and_transform(shapes_root, tmp_path, change):
    assert make_datamodule(shapes_root, tmp_path).locate_features() != (
        make_datamodule(shapes_root, tmp_path, **change).locate_features()
    )


def test_cache_key_changes_with_the_image_list(shapes_root, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(shapes_root, copy)
    before = make_datamodule(copy, tmp_path).locate_features()
    (copy / "images" / "shapes_00011.png").unlink()  # its captions are then skipped as missing
    assert make_datamodule(copy, tmp_path).locate_features() != before


def test_interrupted_build_leaves_no_complete_looking_cache(shapes_root, tmp_path, monkeypatch):
    calls = {"count": 0}
    original = ResNet50Encoder.forward

    def crash_on_second_batch(self, images):
        calls["count"] += 1
        if calls["count"] == 2:
            raise KeyboardInterrupt
        return original(self, images)

    monkeypatch.setattr(ResNet50Encoder, "forward", crash_on_second_batch)
    datamodule = make_datamodule(shapes_root, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        datamodule.prepare_data()
    assert not datamodule.feature_cache_path.exists()
    assert list(tmp_path.glob("*.npy")) == []

    # A partial file left by a killed process is not taken for a cache either: the next run rebuilds.
    monkeypatch.setattr(ResNet50Encoder, "forward", original)
    datamodule.feature_cache_path.with_name(datamodule.feature_cache_path.stem + ".partial-999.npy").write_bytes(b"x")
    datamodule.prepare_data()
    assert np.load(datamodule.feature_cache_path).shape[0] == 12


def test_training_reads_cache_rows_without_mapping_the_file(shapes_root, tmp_path):
    from captioning.data.datasets import CachedFeatures

    datamodule = make_datamodule(shapes_root, tmp_path)
    datamodule.prepare_data()
    rows = CachedFeatures(datamodule.feature_cache_path)
    expected = np.load(datamodule.feature_cache_path)  # numpy's own reader of the file
    for index in (0, 7, 11):
        assert rows[index].dtype == torch.float16  # as stored: the model converts them on its device
        assert torch.equal(rows[index], torch.from_numpy(np.array(expected[index])))


def test_cache_key_changes_when_an_image_is_rewritten(shapes_root, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(shapes_root, copy)
    before = make_datamodule(copy, tmp_path).locate_features()
    image = copy / "images" / "shapes_00003.png"
    image.write_bytes(image.read_bytes() + b"\0")  # same name, new content (a regenerated dataset)
    assert make_datamodule(copy, tmp_path).locate_features() != before


@pytest.mark.slow  # two processes
def test_two_runs_building_the_same_cache_at_once_leave_one_complete_cache(shapes_root, tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    builders = [context.Process(target=_prepare, args=(str(shapes_root), str(tmp_path))) for _ in range(2)]
    for builder in builders:
        builder.start()
    for builder in builders:
        builder.join(timeout=120)
        assert builder.exitcode == 0
    path = make_datamodule(shapes_root, tmp_path).locate_features()
    assert np.load(path).shape == (12, 49, 2048)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, path.with_suffix(".json").name])


def _prepare(root: str, cache_dir: str) -> None:
    make_datamodule(root, cache_dir).prepare_data()


def test_building_the_cache_leaves_the_global_random_state_as_it_was(shapes_root, tmp_path):
    # Iterating the encoding DataLoader draws a seed: without care, a run that builds the cache would shuffle
    # and drop out differently from one that reuses it.
    torch.manual_seed(0)
    state = torch.get_rng_state()
    make_datamodule(shapes_root, tmp_path).prepare_data()
    assert torch.equal(torch.get_rng_state(), state)


def copy_dataset(source, destination):
    """A copy as `cp -r` makes it: the same names and bytes, new modification times."""
    import shutil

    shutil.copytree(source, destination, copy_function=shutil.copyfile)
    for image in (destination / "images").iterdir():
        os.utime(image, (2_000_000_000, 2_000_000_000))
    return destination


def test_a_copied_dataset_reuses_the_cache(shapes_root, tmp_path, monkeypatch):
    built = make_datamodule(shapes_root, tmp_path / "cache")
    built.prepare_data()
    copy = copy_dataset(shapes_root, tmp_path / "copy")

    def fail(*args, **kwargs):
        raise AssertionError("the copy re-encoded every image")

    monkeypatch.setattr(datamodule_module, "build_feature_cache", fail)
    copied = make_datamodule(copy, tmp_path / "cache")
    copied.prepare_data()
    assert copied.feature_cache_path == built.feature_cache_path


def test_an_exif_orientation_turned_in_place_changes_the_key(tmp_path):
    # exiftool -Orientation=6 rewrites two bytes of the header: the file keeps its size, the photo turns.
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 1
    noise.save(tmp_path / "photo.jpg", exif=exif.tobytes())
    before = image_fingerprint(tmp_path / "photo.jpg")
    data = bytearray((tmp_path / "photo.jpg").read_bytes())
    tag = data.index(b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x01")  # big-endian entry: tag, SHORT, 1 value: 1
    data[tag + 9] = 6
    (tmp_path / "photo.jpg").write_bytes(bytes(data))
    assert len(data) > 3 * 4096 and load_image(tmp_path / "photo.jpg").size == (240, 320)  # more than is hashed
    assert image_fingerprint(tmp_path / "photo.jpg") != before


def test_a_changed_image_rebuilds_the_cache_and_the_replaced_cache_is_removed(shapes_root, tmp_path, caplog):
    copy = copy_dataset(shapes_root, tmp_path / "copy")
    cache = tmp_path / "cache"
    make_datamodule(copy, cache).prepare_data()
    other_size = make_datamodule(copy, cache, image_size=32)  # another configuration: kept
    other_size.prepare_data()
    old = make_datamodule(copy, cache).locate_features()
    image = copy / "images" / "shapes_00003.png"
    Image.open(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(image)  # edited, same name

    rebuilt = make_datamodule(copy, cache)
    with caplog.at_level(logging.INFO, logger="captioning.data.feature_cache"):
        rebuilt.prepare_data()

    new = rebuilt.feature_cache_path
    assert new != old and np.load(new).shape == (12, 49, 2048)
    remaining = {path.name for path in cache.iterdir()}
    assert remaining == {p.name for p in (new, new.with_suffix(".json"), other_size.feature_cache_path)} | {
        other_size.feature_cache_path.with_suffix(".json").name
    }
    assert f"Removed {old}" in caplog.text and "GB freed" in caplog.text


def test_a_cache_from_before_image_names_were_recorded_is_replaced_too(shapes_root, tmp_path):
    copy = copy_dataset(shapes_root, tmp_path / "copy")
    cache = tmp_path / "cache"
    make_datamodule(copy, cache).prepare_data()
    old = make_datamodule(copy, cache).locate_features()
    metadata = json.loads(old.with_suffix(".json").read_text())
    for key in ("image_names", "image_loading"):  # as this project wrote it before
        del metadata[key]
    old.with_suffix(".json").write_text(json.dumps(metadata))
    (copy / "images" / "shapes_00003.png").write_bytes((copy / "images" / "shapes_00004.png").read_bytes())

    rebuilt = make_datamodule(copy, cache)
    rebuilt.prepare_data()
    assert sorted(path.name for path in cache.iterdir()) == sorted(
        [rebuilt.feature_cache_path.name, rebuilt.feature_cache_path.with_suffix(".json").name]
    )


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda path: os.truncate(path, path.stat().st_size // 2), "truncated"),  # a copy cut short
        (lambda path: open(path, "ab").write(bytes(64 * 2048 * 2)), "padded"),  # zeros appended
        (lambda path: path.write_bytes(b"\x93NUMPY garbage" + path.read_bytes()[14:]), "header cannot be read"),
        (lambda path: path.with_suffix(".json").unlink(), "metadata"),
    ],
)
def test_a_damaged_cache_is_rebuilt_and_the_log_says_why(shapes_root, tmp_path, caplog, damage, reason):
    datamodule = make_datamodule(shapes_root, tmp_path)
    datamodule.prepare_data()
    path = datamodule.feature_cache_path
    intact = path.read_bytes()
    damage(path)
    assert path.read_bytes() != intact or not path.with_suffix(".json").exists()

    again = make_datamodule(shapes_root, tmp_path)
    with caplog.at_level(logging.WARNING):
        again.prepare_data()
    assert again.feature_cache_path == path
    assert f"The feature cache {path} is damaged" in caplog.text and reason in caplog.text
    assert path.read_bytes() == intact  # rebuilt whole: the same features as before the damage
    again.setup()
    assert len(again.datasets["train"]) > 0 and again.datasets["train"][0]["inputs"].shape == (49, 2048)


def test_a_cache_cut_short_while_in_use_says_to_delete_it(shapes_root, tmp_path):
    from captioning.data.datasets import CachedFeatures
    from captioning.errors import FeatureCacheError

    datamodule = make_datamodule(shapes_root, tmp_path)
    datamodule.prepare_data()
    rows = CachedFeatures(datamodule.feature_cache_path)
    rows[11]
    os.truncate(datamodule.feature_cache_path, rows.data_offset + 5 * rows.row_bytes)
    with pytest.raises(FeatureCacheError, match="ends before row 11: it was truncated while in use. Delete it"):
        rows[11]
