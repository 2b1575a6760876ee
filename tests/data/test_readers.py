import json
import random
from pathlib import Path

import pytest

from captioning.data.readers import detect_format, deterministic_split, read_annotations
from captioning.errors import DatasetFormatError, DatasetNotFoundError
from tests.helpers.layouts import LAYOUTS, write_layout


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_reads_every_caption_with_its_image(tmp_path, layout, shapes_root, shapes_entries):
    root = write_layout(tmp_path, layout, shapes_entries, shapes_root / "images")

    table = read_annotations(root)

    assert table.format == layout
    assert detect_format(root) == layout
    assert len(table.captions) == 5 * len(shapes_entries)
    assert not table.malformed_lines
    for image in table.captions["image"].unique():
        assert (root / image).is_file()
    expected = {(e["filename"], s["raw"]) for e in shapes_entries for s in e["sentences"]}
    found = {(Path(image).name, caption) for image, caption in zip(table.captions["image"], table.captions["caption"])}
    assert found == expected


@pytest.mark.parametrize("layout", ["karpathy", "huggingface"])
def test_layouts_with_a_split_keep_it(tmp_path, layout, shapes_root, shapes_entries):
    root = write_layout(tmp_path, layout, shapes_entries, shapes_root / "images")
    table = read_annotations(root)
    split_of = {Path(image).name: split for image, split in zip(table.captions["image"], table.captions["split"])}
    assert split_of == {entry["filename"]: entry["split"] for entry in shapes_entries}


def test_karpathy_restval_counts_as_train(tmp_path, shapes_root, shapes_entries):
    entries = [dict(entry, split="restval") if entry["split"] == "train" else entry for entry in shapes_entries]
    table = read_annotations(write_layout(tmp_path, "karpathy", entries, shapes_root / "images"))
    assert set(table.captions["split"]) == {"train", "val", "test"}


@pytest.mark.parametrize("layout", ["results_csv", "captions_txt"])
def test_layouts_without_split_use_the_karpathy_json_beside_them(tmp_path, layout, shapes_root, shapes_entries):
    root = write_layout(tmp_path, layout, shapes_entries, shapes_root / "images")
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": shapes_entries}))
    table = read_annotations(root, format=layout)
    split_of = {Path(image).name: split for image, split in zip(table.captions["image"], table.captions["split"])}
    assert split_of == {entry["filename"]: entry["split"] for entry in shapes_entries}


@pytest.mark.parametrize("layout", ["results_csv", "captions_txt"])
def test_layouts_without_split_get_the_deterministic_split(tmp_path, layout, shapes_root, shapes_entries):
    root = write_layout(tmp_path, layout, shapes_entries, shapes_root / "images")
    table = read_annotations(root)
    split_of = {Path(image).name: split for image, split in zip(table.captions["image"], table.captions["split"])}
    assert split_of == deterministic_split([entry["filename"] for entry in shapes_entries])


def test_deterministic_split_has_the_flickr30k_sizes_whatever_the_order():
    names = [f"{1000000 + 37 * i}.jpg" for i in range(31783)]
    split = deterministic_split(names)
    shuffled = names[:]
    random.Random(1).shuffle(shuffled)

    assert deterministic_split(shuffled) == split
    counts = {name: list(split.values()).count(name) for name in ("train", "val", "test")}
    assert counts == {"train": 31783 - 2014, "val": 1014, "test": 1000}


def test_malformed_results_rows_are_reported_not_fatal(tmp_path, shapes_root, shapes_entries, caplog):
    root = write_layout(tmp_path, "results_csv", shapes_entries, shapes_root / "images")
    lines = (root / "results.csv").read_text().splitlines()
    name = shapes_entries[0]["filename"]
    # The real file's known fault: a missing separator; plus an empty comment and a garbage line.
    lines[3] = f"{name}| 4 A dog runs across the grass ."
    lines[5] = f"{name}| 1| "
    lines.insert(7, "this line is not a row")
    (root / "results.csv").write_text("\n".join(lines) + "\n")

    table = read_annotations(root)

    assert table.malformed_lines == [4, 6, 8]
    assert len(table.captions) == 5 * len(shapes_entries) - 2
    assert "skipped 3 malformed row(s) (line 4, 6, 8)" in caplog.text


def test_results_csv_values_are_stripped(tmp_path, shapes_root, shapes_entries):
    root = write_layout(tmp_path, "results_csv", shapes_entries, shapes_root / "images")
    name = shapes_entries[0]["filename"]
    (root / "results.csv").write_text(f"image_name| comment_number| comment\n{name}  |  0 |  A red circle .  \n")
    table = read_annotations(root)
    assert table.captions["caption"].tolist() == ["A red circle ."]
    assert table.captions["image"].tolist() == [f"flickr30k_images/flickr30k_images/{name}"]


def test_captions_txt_keeps_commas_and_quotes(tmp_path, shapes_root, shapes_entries):
    root = write_layout(tmp_path, "captions_txt", shapes_entries, shapes_root / "images")
    name = shapes_entries[0]["filename"]
    (root / "captions.txt").write_text(
        f'image,caption\n{name},"A man, in a hat, says ""hello"" ."\n{name},A dog, unquoted, runs .\nno-comma-here\n'
    )
    table = read_annotations(root)
    assert table.captions["caption"].tolist() == ['A man, in a hat, says "hello" .', "A dog, unquoted, runs ."]
    assert table.malformed_lines == [4]


def test_huggingface_bad_json_row_is_reported(tmp_path, shapes_root, shapes_entries):
    root = write_layout(tmp_path, "huggingface", shapes_entries, shapes_root / "images")
    path = root / "flickr_annotations_30k.csv"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace('"[', '"{', 1)
    path.write_text("\n".join(lines) + "\n")
    table = read_annotations(root)
    assert table.malformed_lines == [3]
    assert len(table.captions) == 5 * (len(shapes_entries) - 1)


def test_missing_root_and_unknown_layout_say_what_to_do(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        read_annotations(tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError, match="expected one of dataset_"):
        read_annotations(tmp_path)
    with pytest.raises(DatasetFormatError, match="Unknown data.format='coco'"):
        read_annotations(tmp_path, format="coco")


def test_missing_image_folder_is_named(tmp_path, shapes_root, shapes_entries):
    root = write_layout(tmp_path, "huggingface", shapes_entries, shapes_root / "images")
    (root / "flickr30k-images").rename(root / "elsewhere")
    with pytest.raises(DatasetNotFoundError, match="Cannot find the images"):
        read_annotations(root)
