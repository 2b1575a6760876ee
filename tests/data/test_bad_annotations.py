"""Annotations as they come from the wild: nothing unusable gets through, nothing usable is lost, and what is
left out is counted, listed, or stops the run with a message that says what to do."""

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from captioning.data.datamodule import CaptionDataModule
from captioning.data.readers import read_annotations
from captioning.errors import DatasetFormatError, EmptySplitError
from captioning.model.encoder import ResNetEncoder
from captioning.vocabulary import Vocabulary
from tests.helpers.layouts import DOWNLOADS, write_layout, write_lines


def test_unusable_captions_and_paths_are_skipped_and_reported(tmp_path, shapes_root, shapes_entries, caplog):
    entries = [dict(entry) for entry in shapes_entries]
    long_caption = " ".join(["a red circle"] * 40)
    entries[0]["sentences"] = [
        {"raw": ""},
        {"raw": " ... !"},
        {"raw": "Un café très coloré à Paris"},
        {"raw": long_caption},
        {"raw": "Un café très coloré à Paris"},  # duplicate of the third
    ]
    outside = [
        dict(entries[1], filename="../outside.png", sentences=[{"raw": "a trap"}]),
        dict(entries[1], filename="/etc/passwd.png", sentences=[{"raw": "another trap"}]),
    ]
    root = write_layout(tmp_path, "karpathy", entries, shapes_root / "images")
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": entries + outside}))

    table = read_annotations(root)

    first = table.captions[table.captions["image"].str.endswith(entries[0]["filename"])]["caption"].tolist()
    assert first == ["Un café très coloré à Paris", long_caption]
    assert not table.captions["caption"].isin(["a trap", "another trap"]).any()
    good = 5 * (len(entries) - 1)
    assert len(table.captions) == good + 2  # every caption of the other images is kept
    assert "skipped 2 empty or punctuation-only caption(s)" in caplog.text
    assert "skipped 1 duplicate caption(s)" in caplog.text
    assert "Refused 2 image file name(s) outside the dataset root" in caplog.text
    assert table.skipped_images == [
        {"image": "../outside.png", "reason": "outside the dataset root"},
        {"image": "/etc/passwd.png", "reason": "outside the dataset root"},
    ]

    vocabulary = Vocabulary.build(table.captions["caption"], min_frequency=1)
    assert "café" in vocabulary.index and "à" in vocabulary.index
    assert len(vocabulary.encode(long_caption, max_length=20)) == 22  # truncated, <bos> and <eos> added


@pytest.mark.parametrize(("dataset", "layout"), [(d, layout) for d, layouts in DOWNLOADS.items() for layout in layouts])
def test_a_missing_first_image_is_skipped_and_listed_and_the_others_are_read(
    tmp_path, dataset, layout, shapes_root, shapes_entries
):
    root = write_layout(tmp_path, layout, shapes_entries, shapes_root / "images", dataset)
    image_folder = DOWNLOADS[dataset][layout][1]
    first = shapes_entries[0]["filename"]  # the image of the first annotation row
    (root / image_folder / first).unlink()
    datamodule = CaptionDataModule(str(root))

    captions = datamodule.load_annotations()

    assert len(captions) == 5 * (len(shapes_entries) - 1)
    assert all((root / image).is_file() for image in captions["image"])
    assert datamodule.skipped_images == [{"image": f"{image_folder}/{first}", "reason": "missing file"}]


def resaved_tab_separated(path: Path) -> None:
    """results.csv opened with its '|' separator and saved again with tabs, a form it is not read in."""
    pd.read_csv(path, sep="|").to_csv(path, sep="\t", index=False)


def resaved_tab_separated_without_header(path: Path) -> None:
    """captions.txt re-saved with tabs between the fields and without its header."""
    rows = [line.split(",", 1) for line in path.read_text().splitlines()[1:]]
    write_lines(path, [f"{image}\t{caption}" for image, caption in rows], "\r\n", final_newline=False)


@pytest.mark.parametrize(
    ("layout", "resave", "expected_row", "first_line"),
    [
        (
            "results_csv",
            resaved_tab_separated,
            "`image_name| comment_number| comment`, fields separated by '|', or `image_name,comment_number,comment`, "
            "fields separated by ',', after a header line",
            "'image_name\\t comment_number\\t comment'",
        ),
        (
            "captions_txt",
            resaved_tab_separated_without_header,
            "`image,caption`, fields separated by ',', after a header line",
            "'shapes_00000.png\\t",
        ),
    ],
)
def test_a_file_whose_every_row_is_malformed_says_what_a_row_should_be_and_what_its_lines_are(
    tmp_path, layout, resave, expected_row, first_line, shapes_root, shapes_entries
):
    root = write_layout(tmp_path, layout, shapes_entries, shapes_root / "images")
    path = root / DOWNLOADS["flickr30k"][layout][0]
    resave(path)
    lines = len(path.read_text().splitlines())

    with pytest.raises(DatasetFormatError) as error:
        read_annotations(root)

    message = str(error.value)
    assert (
        f"{path} holds no readable row: none of its {lines} line(s) is a {layout} row (line 1, 2, 3, 4, 5 ...)"
        in message
    )
    assert f"A {layout} row is {expected_row}; the file begins with {first_line}" in message


@pytest.mark.parametrize("layout", ["karpathy", "huggingface"])
def test_images_listed_without_a_caption_are_counted_by_split_and_listed(
    tmp_path, layout, shapes_root, shapes_entries, caplog
):
    entries = [dict(entry, sentences=[]) if entry["split"] == "test" else entry for entry in shapes_entries]
    root = write_layout(tmp_path, layout, entries, shapes_root / "images")
    datamodule = CaptionDataModule(str(root))

    captions = datamodule.load_annotations()

    test_images = sorted(entry["filename"] for entry in entries if entry["split"] == "test")
    assert set(captions["split"]) == {"train", "val"}
    assert "2 image(s) have no usable caption and are left out (train 0, val 0, test 2; first: " in caplog.text
    image_folder = DOWNLOADS["flickr30k"][layout][1]
    listed = sorted(skipped["image"] for skipped in datamodule.skipped_images if skipped["reason"] == "no caption")
    assert listed == [f"{image_folder}/{name}" for name in test_images]


def test_training_without_a_training_image_stops_with_what_to_do(tmp_path, shapes_root, shapes_entries):
    root = write_layout(tmp_path, "captions_txt", shapes_entries[:1], shapes_root / "images")  # one image: test

    with pytest.raises(EmptySplitError, match=r"The train split of .* has no usable image \(train 0, val 0, test 1"):
        CaptionDataModule(str(root)).load_annotations()
    evaluation = CaptionDataModule(str(root), splits=["test"])  # an evaluation of the test split needs no train
    assert len(evaluation.load_annotations()) == 5


def test_training_images_that_are_all_unreadable_stop_the_run_before_the_sampler(tmp_path, shapes_root, shapes_entries):
    root = write_layout(tmp_path, "karpathy", shapes_entries, shapes_root / "images")
    encoder = ResNetEncoder(None, image_size=64)
    datamodule = CaptionDataModule(
        str(root), encoder=encoder, cache_features=False, min_word_frequency=1, num_workers=0
    )
    datamodule.load_annotations()
    for entry in shapes_entries:
        if entry["split"] == "train":
            (root / "flickr30k_images" / entry["filename"]).write_bytes(b"")

    with pytest.raises(EmptySplitError, match="train 0, val 2, test 2 images; 8 image\\(s\\) were skipped"):
        datamodule.setup()


def test_training_without_a_validation_image_says_it_will_not_validate(tmp_path, shapes_root, shapes_entries, caplog):
    entries = [dict(entry, split="train") if entry["split"] == "val" else entry for entry in shapes_entries]
    root = write_layout(tmp_path, "karpathy", entries, shapes_root / "images")

    with caplog.at_level(logging.WARNING):
        CaptionDataModule(str(root)).load_annotations()

    assert "has no usable image (train 10, val 0, test 2 images): this run will not validate" in caplog.text
    assert "writes no best.ckpt; last.ckpt is its model" in caplog.text
