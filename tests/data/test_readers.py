import json
import logging
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest

from captioning.data.readers import detect_format, deterministic_split, read_annotations
from captioning.errors import DatasetFormatError, DatasetNotFoundError
from tests.helpers.layouts import DOWNLOADS, LINE_LAYOUTS, write_comma_separated_results_csv, write_layout

EVERY_DOWNLOAD = [(dataset, layout) for dataset, layouts in DOWNLOADS.items() for layout in layouts]


def pairs(table) -> set[tuple[str, str]]:
    return {(Path(image).name, caption) for image, caption in zip(table.captions["image"], table.captions["caption"])}


def split_by_name(table) -> dict[str, str]:
    return {Path(image).name: split for image, split in zip(table.captions["image"], table.captions["split"])}


@pytest.mark.parametrize(("dataset", "layout"), EVERY_DOWNLOAD)
def test_each_download_reads_every_caption_with_its_image(tmp_path, dataset, layout, shapes_root, shapes_entries):
    root = write_layout(tmp_path, layout, shapes_entries, shapes_root / "images", dataset)

    table = read_annotations(root)

    assert table.format == layout
    assert detect_format(root) == layout
    assert len(table.captions) == 5 * len(shapes_entries)
    assert not table.malformed_lines and not table.skipped_images
    for image in table.captions["image"].unique():
        assert (root / image).is_file()
    assert pairs(table) == {(e["filename"], s["raw"]) for e in shapes_entries for s in e["sentences"]}


@pytest.mark.parametrize("layout", LINE_LAYOUTS)
def test_line_files_saved_with_crlf_and_no_final_newline_read_the_same(tmp_path, layout, shapes_root, shapes_entries):
    images = shapes_root / "images"
    unix = read_annotations(write_layout(tmp_path / "unix", layout, shapes_entries, images))
    windows = write_layout(tmp_path / "windows", layout, shapes_entries, images, newline="\r\n", final_newline=False)
    assert (windows / DOWNLOADS["flickr30k"][layout][0]).read_bytes().count(b"\r\n") >= len(shapes_entries)

    table = read_annotations(windows)

    assert not table.malformed_lines
    assert table.captions.equals(unix.captions)  # the last caption too, and none ends with '\r'


@pytest.mark.parametrize("layout", ["karpathy", "huggingface"])
def test_layouts_with_a_split_keep_it(tmp_path, layout, shapes_root, shapes_entries):
    table = read_annotations(write_layout(tmp_path, layout, shapes_entries, shapes_root / "images"))
    assert split_by_name(table) == {entry["filename"]: entry["split"] for entry in shapes_entries}


def test_karpathy_restval_counts_as_train(tmp_path, shapes_root, shapes_entries):
    entries = [dict(entry, split="restval") if entry["split"] == "train" else entry for entry in shapes_entries]
    table = read_annotations(write_layout(tmp_path, "karpathy", entries, shapes_root / "images"))
    assert set(table.captions["split"]) == {"train", "val", "test"}


@pytest.mark.parametrize("layout", ["results_csv", "captions_txt", "token"])
def test_layouts_without_split_use_the_karpathy_json_beside_them(tmp_path, layout, shapes_root, shapes_entries):
    root = write_layout(tmp_path, layout, shapes_entries, shapes_root / "images")
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": shapes_entries}))
    table = read_annotations(root, format=layout)
    assert split_by_name(table) == {entry["filename"]: entry["split"] for entry in shapes_entries}


@pytest.mark.parametrize("layout", ["results_csv", "captions_txt", "token"])
def test_layouts_without_split_get_the_deterministic_split(tmp_path, layout, shapes_root, shapes_entries):
    table = read_annotations(write_layout(tmp_path, layout, shapes_entries, shapes_root / "images"))
    assert split_by_name(table) == deterministic_split([entry["filename"] for entry in shapes_entries])


def test_deterministic_split_has_the_flickr30k_sizes_whatever_the_order():
    names = [f"{1000000 + 37 * i}.jpg" for i in range(31783)]
    split = deterministic_split(names)
    shuffled = names[:]
    random.Random(1).shuffle(shuffled)

    assert deterministic_split(shuffled) == split
    counts = {name: list(split.values()).count(name) for name in ("train", "val", "test")}
    assert counts == {"train": 31783 - 2014, "val": 1014, "test": 1000}


def test_kaggle_flickr30k_is_read_from_the_folder_it_unpacks_into_and_the_log_names_the_file(
    tmp_path, shapes_root, shapes_entries, caplog
):
    root = write_layout(tmp_path, "results_csv", shapes_entries, shapes_root / "images")  # flickr30k_images/...

    with caplog.at_level(logging.INFO, logger="captioning.data.readers"):
        outer = read_annotations(root)
    inner = read_annotations(root / "flickr30k_images")  # the folder that holds results.csv works too

    assert f"Annotations: {root / 'flickr30k_images' / 'results.csv'}" in caplog.text
    assert f"Images: {root / 'flickr30k_images' / 'flickr30k_images'}/ holds 12 of the 12 images" in caplog.text
    assert {image.rsplit("/", 1)[0] for image in outer.captions["image"]} == {"flickr30k_images/flickr30k_images"}
    assert {image.rsplit("/", 1)[0] for image in inner.captions["image"]} == {"flickr30k_images"}
    assert split_by_name(outer) == split_by_name(inner) and pairs(outer) == pairs(inner)


def test_images_are_found_in_whatever_folder_holds_them(tmp_path, shapes_root, shapes_entries):
    root = write_layout(tmp_path, "karpathy", shapes_entries, shapes_root / "images")
    (root / "flickr30k_images").rename(root / "my photos")
    (root / "empty folder").mkdir()

    table = read_annotations(root)

    assert {image.rsplit("/", 1)[0] for image in table.captions["image"]} == {"my photos"}


def test_malformed_results_rows_are_reported_not_fatal(tmp_path, shapes_root, shapes_entries, caplog):
    root = write_layout(tmp_path, "results_csv", shapes_entries, shapes_root / "images")
    path = root / "flickr30k_images" / "results.csv"
    lines = path.read_text().splitlines()
    name = shapes_entries[0]["filename"]
    # The real file's known fault: a missing separator; plus an empty comment and a garbage line.
    lines[3] = f"{name}| 4 A dog runs across the grass ."
    lines[5] = f"{name}| 1| "
    lines.insert(7, "this line is not a row")
    path.write_text("\n".join(lines) + "\n")

    table = read_annotations(root)

    assert table.malformed_lines == [4, 6, 8]
    assert len(table.captions) == 5 * len(shapes_entries) - 2
    assert "skipped 3 malformed row(s) (line 4, 6, 8)" in caplog.text


def test_results_csv_values_are_stripped(tmp_path, shapes_root, shapes_entries):
    root = write_layout(tmp_path, "results_csv", shapes_entries, shapes_root / "images")
    name = shapes_entries[0]["filename"]
    path = root / "flickr30k_images" / "results.csv"
    path.write_text(f"image_name| comment_number| comment\n{name}  |  0 |  A red circle .  \n")
    table = read_annotations(root)
    assert table.captions["caption"].tolist() == ["A red circle ."]
    assert table.captions["image"].tolist() == [f"flickr30k_images/flickr30k_images/{name}"]


def resaved_by_pandas(path: Path, entries: list[dict]) -> None:
    """results.csv opened with its '|' separator and saved again by pandas: a header of `image_name, comment_number,
    comment`, the spaces after Kaggle's pipes kept in the values, the captions with commas quoted."""
    pd.read_csv(path, sep="|").to_csv(path, index=False)


@pytest.mark.parametrize("resave", [write_comma_separated_results_csv, resaved_by_pandas])
def test_results_csv_resaved_comma_separated_reads_every_caption_with_its_commas_and_quotes(
    tmp_path, resave, shapes_root, shapes_entries
):
    entries = [dict(entry) for entry in shapes_entries]
    entries[0] = dict(entries[0], sentences=[{"raw": 'A man, in a hat, says "hello" .'}, {"raw": "A dog runs ."}])
    root = write_layout(tmp_path, "results_csv", entries, shapes_root / "images")
    path = root / "flickr30k_images" / "results.csv"
    resave(path, entries)
    assert "|" not in path.read_text() and 'A man, in a hat, says ""hello"" ."\n' in path.read_text()  # quoted

    table = read_annotations(root)

    assert table.format == "results_csv" and not table.malformed_lines
    assert pairs(table) == {(e["filename"], s["raw"]) for e in entries for s in e["sentences"]}
    assert len(table.captions) == 2 + 5 * 11
    assert split_by_name(table) == deterministic_split([entry["filename"] for entry in entries])


def test_captions_txt_keeps_commas_and_quotes(tmp_path, shapes_root, shapes_entries):
    root = write_layout(tmp_path, "captions_txt", shapes_entries, shapes_root / "images")
    name = shapes_entries[0]["filename"]
    (root / "captions.txt").write_text(
        f'image,caption\n{name},"A man, in a hat, says ""hello"" ."\n{name},A dog, unquoted, runs .\nno-comma-here\n'
    )
    table = read_annotations(root)
    assert table.captions["caption"].tolist() == ['A man, in a hat, says "hello" .', "A dog, unquoted, runs ."]
    assert table.malformed_lines == [4]


def test_a_captions_txt_without_header_keeps_its_first_row(tmp_path, shapes_root, shapes_entries):
    root = write_layout(tmp_path, "captions_txt", shapes_entries, shapes_root / "images")
    path = root / "captions.txt"
    path.write_text("\n".join(path.read_text().splitlines()[1:]))
    assert len(read_annotations(root).captions) == 5 * len(shapes_entries)


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
    with pytest.raises(DatasetFormatError, match="Unknown data.format='imagenet'"):
        read_annotations(tmp_path, format="imagenet")
    with pytest.raises(DatasetFormatError, match="Unknown data.restval='val': use train or drop"):
        read_annotations(tmp_path, restval="val")


def test_a_root_too_high_or_too_low_says_what_it_holds(tmp_path, shapes_root, shapes_entries):
    downloads = tmp_path / "downloads"
    write_layout(downloads / "unpacked", "results_csv", shapes_entries, shapes_root / "images")  # two levels down
    (downloads / "flickr30k.zip").write_bytes(b"")

    with pytest.raises(DatasetNotFoundError) as too_high:
        read_annotations(downloads)
    with pytest.raises(DatasetNotFoundError) as too_low:
        read_annotations(downloads / "unpacked" / "flickr30k_images" / "flickr30k_images")

    assert "expected one of dataset_*.json" in str(too_high.value) and "results.csv" in str(too_high.value)
    assert "but it holds unpacked/, flickr30k.zip." in str(too_high.value)
    first_images = ", ".join(sorted(entry["filename"] for entry in shapes_entries)[:8])
    assert f"but it holds {first_images} and 4 more." in str(too_low.value)


@pytest.mark.parametrize(
    ("layout", "forced", "files"),
    [
        ("captions_txt", "results_csv", "results.csv (Kaggle Flickr30k, '|'- or comma-separated)"),
        ("results_csv", "captions_txt", "captions.txt (Kaggle Flickr8k or Flickr30k)"),
        ("karpathy", "token", "results_20130124.token or Flickr8k.token.txt"),
        (
            "karpathy",
            "coco_captions",
            "captions_train2014.json and captions_val2014.json, or their 2017 versions (official COCO",
        ),
    ],
)
def test_a_forced_layout_that_is_not_there_names_the_files_it_reads(
    tmp_path, layout, forced, files, shapes_root, shapes_entries
):
    root = write_layout(tmp_path, layout, shapes_entries, shapes_root / "images")
    holds = {"captions_txt": "Images/, captions.txt", "results_csv": "flickr30k_images/"}.get(
        layout, "flickr30k_images/, dataset_flickr30k.json"
    )

    with pytest.raises(DatasetNotFoundError) as error:
        read_annotations(root, format=forced)

    assert f"data.format={forced} reads only {files}" in str(error.value)
    assert f"but it holds {holds}. Point data.root at" in str(error.value)
    assert str(error.value).endswith("or detect the layout with data.format=auto.")


def test_an_image_folder_that_is_not_there_is_named(tmp_path, shapes_root, shapes_entries):
    root = write_layout(tmp_path, "huggingface", shapes_entries, shapes_root / "images")
    shutil.rmtree(root / "flickr30k-images")
    (root / "other images").mkdir()
    with pytest.raises(DatasetNotFoundError, match="Cannot find the images .* none of the 12 images .* other images/"):
        read_annotations(root)
