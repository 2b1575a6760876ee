"""COCO as people download it: Karpathy's dataset_coco.json with train2014/ and val2014/, and the official caption
files of 2014 and 2017, with or without a Karpathy split beside them."""

import hashlib
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import torch

from captioning.config_checks import check_config
from captioning.data.datamodule import CaptionDataModule
from captioning.data.readers import read_annotations
from captioning.errors import ConfigError, DatasetNotFoundError
from tests.helpers.layouts import (
    coco_entries,
    coco_image_path,
    write_coco_karpathy,
    write_coco_official,
    write_comma_separated_results_csv,
    write_layout,
)
from tests.helpers.runs import compose_config, compose_dataset
from train import train


@pytest.fixture(scope="module")
def entries(shapes_entries) -> list[dict]:
    """12 images: Karpathy's test 2, val 2, restval 2, train 6; val2014 holds the first 6, train2014 the others."""
    return coco_entries(shapes_entries)


def by_image(table) -> dict[str, str]:
    return dict(zip(table.captions["image"], table.captions["split"]))


def karpathy_split(entries, year: int, restval: str = "train") -> dict[str, str]:
    """Image path -> Karpathy's split, restval as `restval` says (train, or left out for drop)."""
    splits = {coco_image_path(entry, year): entry["split"] for entry in entries}
    if restval == "drop":
        return {image: split for image, split in splits.items() if split != "restval"}
    return {image: "train" if split == "restval" else split for image, split in splits.items()}


def all_captions(entries, year: int, restval: str = "train") -> set[tuple[str, str]]:
    kept = karpathy_split(entries, year, restval)
    return {
        (coco_image_path(e, year), s["raw"])
        for e in entries
        for s in e["sentences"]
        if coco_image_path(e, year) in kept
    }


def pairs(table) -> set[tuple[str, str]]:
    return set(zip(table.captions["image"], table.captions["caption"]))


@pytest.mark.parametrize("restval", ["train", "drop"])
def test_karpathy_coco_reads_each_image_under_its_filepath_and_restval_as_asked(
    tmp_path, entries, shapes_root, restval, caplog
):
    root = write_coco_karpathy(tmp_path, entries, shapes_root / "images")

    with caplog.at_level(logging.INFO, logger="captioning.data.readers"):
        table = read_annotations(root, restval=restval)

    assert table.format == "karpathy" and table.annotation_file == root / "dataset_coco.json"
    assert by_image(table) == karpathy_split(entries, 2014, restval)
    assert by_image(table)["val2014/COCO_val2014_000000000107.jpg"] == "test"  # the 2nd image, cocoid 107
    assert by_image(table)["train2014/COCO_train2014_000000000142.jpg"] == "train"
    assert by_image(table).get("val2014/COCO_val2014_000000000128.jpg") == {"train": "train", "drop": None}[restval]
    assert all((root / image).is_file() for image in table.captions["image"])
    assert pairs(table) == all_captions(entries, 2014, restval)
    counts = table.captions.drop_duplicates("image")["split"].value_counts().to_dict()
    assert counts == ({"train": 8, "val": 2, "test": 2} if restval == "train" else {"train": 6, "val": 2, "test": 2})
    dropped = "data.restval=drop: left out the 2 restval image(s) of dataset_coco.json and their 10 caption(s)"
    assert (dropped in caplog.text) == (restval == "drop")


def test_karpathy_sentences_without_raw_are_read_from_their_tokens(tmp_path, entries, shapes_root):
    tokens_only = [dict(entry, sentences=[{"tokens": s["tokens"]} for s in entry["sentences"]]) for entry in entries]
    root = write_coco_karpathy(tmp_path, tokens_only, shapes_root / "images")

    table = read_annotations(root)

    first = entries[0]["sentences"][0]["tokens"]  # e.g. ["a", "small", "green", "triangle", ...]
    assert " ".join(first) in set(table.captions["caption"])
    assert len(table.captions) == 60


def hashed_halves(names: list[str]) -> tuple[set[str], set[str]]:
    """The rule the log states, written out: ordered by the SHA-256 of their paths, the first half is val."""
    ordered = sorted(names, key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    return set(ordered[: len(ordered) // 2]), set(ordered[len(ordered) // 2 :])


@pytest.mark.parametrize(("year", "val_images"), [(2014, 6), (2017, 2)])
def test_official_files_without_a_karpathy_split_train_on_train_and_split_val_into_val_and_test(
    tmp_path, entries, shapes_root, year, val_images, caplog
):
    root = write_coco_official(tmp_path, entries, shapes_root / "images", year)

    with caplog.at_level(logging.INFO, logger="captioning.data.readers"):
        table = read_annotations(root)

    assert table.format == "coco_captions"
    assert table.annotation_file == root / "annotations" / f"captions_train{year}.json"
    splits = by_image(table)
    official_val = [coco_image_path(e, year) for e in entries if coco_image_path(e, year).startswith(f"val{year}/")]
    assert len(official_val) == val_images
    assert {image for image, split in splits.items() if split == "train"} == {
        coco_image_path(e, year) for e in entries if coco_image_path(e, year).startswith(f"train{year}/")
    }
    val, test = hashed_halves(official_val)
    assert {image for image, split in splits.items() if split == "val"} == val
    assert {image for image, split in splits.items() if split == "test"} == test
    assert pairs(table) == {(coco_image_path(e, year), s["raw"]) for e in entries for s in e["sentences"]}
    half = val_images // 2
    assert (
        f"No Karpathy split (dataset_coco.json) beside captions_train{year}.json or in {root}: val{year}'s "
        f"{val_images} images split by the SHA-256 of their names into {half} val, {half} test and 0 restval"
    ) in caplog.text
    # the images are found through their folders train{year}/ and val{year}/, and counted one by one
    assert f"Images: {root}/ holds {len(entries)} of the {len(entries)} images named in the annotations" in caplog.text


@pytest.mark.parametrize("year", [2014, 2017])
@pytest.mark.parametrize("karpathy_in", [".", "annotations"])
def test_official_files_take_the_split_of_the_karpathy_json_beside_them_by_image_id(
    tmp_path, entries, shapes_root, year, karpathy_in
):
    root = write_coco_official(tmp_path, entries, shapes_root / "images", year, karpathy_in)

    table = read_annotations(root)

    # The official files, even with dataset_coco.json nearer in the root: the 2017 images are not where it says.
    assert table.format == "coco_captions"
    assert by_image(table) == karpathy_split(entries, year)
    assert all((root / image).is_file() for image in table.captions["image"])
    assert pairs(table) == all_captions(entries, year)  # captions stripped of COCO's trailing spaces


def test_official_2017_files_with_a_karpathy_split_drop_its_restval_when_asked(tmp_path, entries, shapes_root):
    root = write_coco_official(tmp_path, entries, shapes_root / "images", 2017, "annotations")
    table = read_annotations(root, restval="drop")
    assert by_image(table) == karpathy_split(entries, 2017, "drop")
    assert len(table.captions) == 5 * 10


@pytest.mark.parametrize(("restval", "train_images"), [("train", 3 + 7), ("drop", 3)])
def test_a_val2014_of_coco_size_keeps_5000_val_and_5000_test_images_and_the_rest_is_restval(
    tmp_path, restval, train_images, caplog
):
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    for split, count in (("train", 3), ("val", 10_007)):
        (tmp_path / f"{split}2014").mkdir()  # the images are not needed to read the annotations
        images = [{"id": i, "file_name": f"COCO_{split}2014_{i:012d}.jpg"} for i in range(count)]
        captions = [{"image_id": i, "id": i, "caption": f"photo number {i}"} for i in range(count)]
        (annotations / f"captions_{split}2014.json").write_text(json.dumps({"images": images, "annotations": captions}))

    with caplog.at_level(logging.INFO, logger="captioning.data.readers"):
        table = read_annotations(tmp_path, restval=restval)

    counts = table.captions["split"].value_counts().to_dict()
    assert counts == {"val": 5000, "test": 5000, "train": train_images}
    assert "val2014's 10,007 images split by the SHA-256 of their names into 5,000 val, 5,000 test and 7 restval" in (
        caplog.text
    )


def test_a_missing_caption_file_and_malformed_entries_are_reported_and_the_rest_is_read(
    tmp_path, entries, shapes_root, caplog
):
    root = write_coco_official(tmp_path, entries, shapes_root / "images", 2014)
    (root / "annotations" / "captions_train2014.json").unlink()
    val_file = root / "annotations" / "captions_val2014.json"
    content = json.loads(val_file.read_text())
    content["annotations"] += [{"image_id": 999999, "id": 1, "caption": "an image it does not list"}, {"id": 2}]
    content["images"].append({"id": 5})  # no file_name
    val_file.write_text(json.dumps(content))

    table = read_annotations(root)

    assert table.annotation_file == val_file
    assert set(table.captions["image"]) == {coco_image_path(e, 2014) for e in entries if e["filepath"] == "val2014"}
    assert len(table.captions) == 30
    assert "captions_train2014.json is not beside captions_val2014.json: COCO 2014's train images are left out" in (
        caplog.text
    )
    assert "captions_val2014.json: skipped 1 malformed images[] entries" in caplog.text
    assert "captions_val2014.json: skipped 2 malformed annotations[] entries" in caplog.text
    assert "(index 30, 31)" in caplog.text  # after the 6 images' 5 captions


def test_missing_images_of_the_official_files_are_skipped_and_listed(tmp_path, entries, shapes_root):
    root = write_coco_official(tmp_path, entries, shapes_root / "images", 2017)
    gone = coco_image_path(entries[-1], 2017)  # train2017/000000000177.jpg
    (root / gone).unlink()
    datamodule = CaptionDataModule(str(root))

    captions = datamodule.load_annotations()

    assert gone == "train2017/000000000177.jpg"
    assert datamodule.skipped_images == [{"image": gone, "reason": "missing file"}]
    assert len(captions) == 5 * 11 and gone not in set(captions["image"])


def test_a_root_without_the_annotations_says_what_it_holds_and_what_coco_needs(tmp_path, entries, shapes_root):
    root = write_coco_official(tmp_path / "coco", entries, shapes_root / "images", 2014)
    (root / "annotations").rename(tmp_path / "annotations_elsewhere")

    with pytest.raises(DatasetNotFoundError) as images_only:
        read_annotations(root)
    with pytest.raises(DatasetNotFoundError) as forced:
        read_annotations(root, format="coco_captions")

    assert "captions_train2014.json and captions_val2014.json, or their 2017 versions" in str(images_only.value)
    assert "dataset_*.json (Karpathy split, e.g. dataset_coco.json)" in str(images_only.value)
    assert "but it holds train2014/, val2014/." in str(images_only.value)
    assert "data.format=coco_captions reads only captions_train2014.json and captions_val2014.json" in str(forced.value)


def test_annotations_whose_image_folders_are_missing_say_so(tmp_path, entries, shapes_root):
    root = write_coco_official(tmp_path, entries, shapes_root / "images", 2014)
    for folder in ("train2014", "val2014"):
        for image in (root / folder).iterdir():
            image.unlink()
        (root / folder).rmdir()
    with pytest.raises(DatasetNotFoundError, match="Cannot find the images of .* none of the 12 images"):
        read_annotations(root)


def test_a_karpathy_json_beside_the_2017_images_alone_says_it_needs_the_official_files(tmp_path, entries, shapes_root):
    root = write_coco_official(tmp_path, entries, shapes_root / "images", 2017, karpathy_in=".")
    for file in (root / "annotations").iterdir():
        file.unlink()

    with pytest.raises(DatasetNotFoundError) as error:
        read_annotations(root)

    assert "none of the 12 images named in the annotations (such as train2014/COCO_train2014_000000000142.jpg)" in (
        str(error.value)
    )
    assert "dataset_coco.json names COCO's 2014 images (train2014/, val2014/), not the 2017 ones" in str(error.value)
    assert "put the official annotations/captions_train2017.json and captions_val2017.json" in str(error.value)


def test_data_coco_composes_and_its_restval_is_checked(tmp_path):
    cfg = compose_config("train", ["data=coco", f"data.root={tmp_path}", f"paths.root_dir={tmp_path}"])
    assert cfg.data.restval == "train" and cfg.data.format == "auto" and cfg.data.min_word_frequency == 5
    check_config(compose_config("train", ["data=coco", f"data.root={tmp_path}", "data.format=coco_captions"]))

    with pytest.raises(ConfigError, match="data.restval=keep is not one of train, drop: e.g. data.restval=train"):
        check_config(compose_config("train", ["data=coco", f"data.root={tmp_path}", "data.restval=keep"]))


def coco_karpathy(root: Path, entries: list[dict], images: Path) -> Path:
    return write_coco_karpathy(root, entries, images)


def coco_2014_with_bad_images(root: Path, entries: list[dict], images: Path) -> Path:
    """The official 2014 files without a Karpathy split, train2014's first image missing and its second unreadable."""
    write_coco_official(root, entries, images, 2014)
    (root / "train2014" / "COCO_train2014_000000000142.jpg").unlink()
    (root / "train2014" / "COCO_train2014_000000000149.jpg").write_bytes(b"")
    return root


def coco_2017_with_karpathy(root: Path, entries: list[dict], images: Path) -> Path:
    return write_coco_official(root, entries, images, 2017, "annotations")


def flickr30k_comma_results(root: Path, entries: list[dict], images: Path) -> Path:
    shapes = [dict(entry, filename=entry["shape"]) for entry in entries]
    write_layout(root, "results_csv", shapes, images)
    write_comma_separated_results_csv(root / "flickr30k_images" / "results.csv", shapes)
    return root


BAD_2014_IMAGES = {
    "train2014/COCO_train2014_000000000142.jpg": "missing file",
    "train2014/COCO_train2014_000000000149.jpg": "unreadable image",
}


@pytest.mark.slow  # trains
@pytest.mark.parametrize(
    ("dataset", "write", "restval", "train_captions", "skipped"),
    [
        ("coco", coco_karpathy, "train", 5 * 8, {}),  # train 6 + restval 2
        ("coco", coco_2014_with_bad_images, "train", 5 * (6 - 2), BAD_2014_IMAGES),  # train2014's 6, less 2
        ("coco", coco_2017_with_karpathy, "drop", 5 * 6, {}),  # Karpathy's train, restval left out
        ("flickr30k", flickr30k_comma_results, "train", 5 * 10, {}),  # no split of its own: 1 test, 1 val, 10 train
    ],
    ids=["coco-karpathy", "coco-2014-bad-images", "coco-2017-karpathy-drop", "flickr30k-comma-results-csv"],
)
def test_each_coco_layout_and_the_comma_results_csv_train_to_a_checkpoint(
    tmp_path, entries, shapes_root, dataset, write, restval, train_captions, skipped
):
    root = write(tmp_path / "dataset", entries, shapes_root / "images")
    overrides = ["trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "~logger", f"data.restval={restval}"]

    result = train(compose_dataset(tmp_path, dataset, root, *overrides))

    assert result["global_step"] == 2 and result["train_samples"] == train_captions
    best = torch.load(result["best_checkpoint"], weights_only=True)
    assert best["run_config"]["data"]["root"] == str(root)
    assert best["run_config"]["data"]["restval"] == restval
    assert Path(result["last_checkpoint"]).is_file()
    skipped_file = Path(result["output_dir"]) / "skipped_images.csv"
    listed = pd.read_csv(skipped_file) if skipped_file.exists() else pd.DataFrame(columns=["image", "reason"])
    assert dict(zip(listed["image"], listed["reason"])) == skipped
