"""Tiny datasets written in the exact on-disk layouts of Flickr30k's, Flickr8k's and COCO's popular downloads."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pandas as pd
from PIL import Image

from captioning.data.shapes import generate_shapes_dataset

# (annotation file, image folder) of each download, relative to the folder it unpacks into.
DOWNLOADS = {
    "flickr30k": {
        "karpathy": ("dataset_flickr30k.json", "flickr30k_images"),
        # Kaggle's archive: results.csv in flickr30k_images/, the images one folder further down.
        "results_csv": ("flickr30k_images/results.csv", "flickr30k_images/flickr30k_images"),
        "huggingface": ("flickr_annotations_30k.csv", "flickr30k-images"),
        "captions_txt": ("captions.txt", "Images"),
        "token": ("results_20130124.token", "flickr30k-images"),  # from the authors: no split
    },
    "flickr8k": {
        "karpathy": ("dataset_flickr8k.json", "Flicker8k_Dataset"),
        "captions_txt": ("captions.txt", "Images"),  # Kaggle
        "token": ("Flickr8k.token.txt", "Flicker8k_Dataset"),  # from the authors, with the split lists
    },
}
LINE_LAYOUTS = ("results_csv", "captions_txt", "token")
# Flickr8k's official split lists, beside Flickr8k.token.txt: split -> file.
SPLIT_LISTS = {
    "train": "Flickr_8k.trainImages.txt",
    "val": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}


def tiny_shapes(root: Path, num_images: int = 12, image_size: int = 64) -> list[dict]:
    """Generate a tiny shapes dataset in `root`; returns its Karpathy image entries."""
    generate_shapes_dataset(root, num_images=num_images, val_images=2, test_images=2, image_size=image_size)
    return json.loads((root / "dataset_shapes.json").read_text())["images"]


def write_lines(path: Path, lines: list[str], newline: str = "\n", final_newline: bool = True) -> None:
    """Write `lines` byte for byte: with `newline` endings (\r\n as files saved on Windows), with or without
    one after the last line."""
    text = newline.join(lines) + (newline if final_newline else "")
    path.write_bytes(text.encode("utf-8"))


def annotation_lines(layout: str, entries: list[dict]) -> list[str]:
    """The lines of a line-based annotation file of `entries` (Karpathy image entries), header included."""
    if layout == "results_csv":
        rows = [f"{e['filename']}| {n}| {s['raw']}" for e in entries for n, s in enumerate(e["sentences"])]
        return ["image_name| comment_number| comment", *rows]
    if layout == "token":
        return [f"{e['filename']}#{n}\t{s['raw']}" for e in entries for n, s in enumerate(e["sentences"])]
    if layout == "captions_txt":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")  # quotes only the captions that hold commas or quotes
        writer.writerow(["image", "caption"])
        writer.writerows([e["filename"], s["raw"]] for e in entries for s in e["sentences"])
        return buffer.getvalue().splitlines()
    raise ValueError(layout)


def write_layout(
    root: Path,
    layout: str,
    entries: list[dict],
    images_from: Path,
    dataset: str = "flickr30k",
    newline: str = "\n",
    final_newline: bool = True,
) -> Path:
    """Write `entries` (Karpathy image entries) into `root` as `dataset`'s download in `layout` unpacks, copying
    their images; line-based files get `newline` endings. Returns root."""
    annotation_name, image_folder = DOWNLOADS[dataset][layout]
    image_dir = root / image_folder
    image_dir.mkdir(parents=True)
    for entry in entries:
        shutil.copy(images_from / entry["filename"], image_dir / entry["filename"])
    annotation = root / annotation_name
    if layout == "karpathy":
        annotation.write_text(json.dumps({"dataset": dataset, "images": entries}))
    elif layout == "huggingface":
        rows = [
            {
                "raw": json.dumps([sentence["raw"] for sentence in entry["sentences"]]),
                "sentids": json.dumps(list(range(index * 5, index * 5 + len(entry["sentences"])))),
                "split": entry["split"],
                "filename": entry["filename"],
                "img_id": index,
            }
            for index, entry in enumerate(entries)
        ]
        pd.DataFrame(rows).to_csv(annotation, index=False)
    else:
        write_lines(annotation, annotation_lines(layout, entries), newline, final_newline)
    if dataset == "flickr8k" and layout == "token":  # the authors' Flickr8k_text also holds a lemmatised copy
        lemmatised = [line.lower() for line in annotation_lines(layout, entries)]
        write_lines(root / "Flickr8k.lemma.token.txt", lemmatised, newline, final_newline)
        for split, name in SPLIT_LISTS.items():
            names = [entry["filename"] for entry in entries if entry["split"] == split]
            write_lines(annotation.parent / name, names, newline, final_newline)
    return root


def memorisable_dataset(root: Path, source: Path, eval_split: str, copies: int = 30, images: int = 4) -> Path:
    """A Karpathy-layout dataset whose `eval_split` images are the training images, one caption each: a model
    can learn them by heart, so that its captions of that split score high. Training sees each image as
    `copies` identical files (more steps per epoch, no duplicate rows)."""
    entries = tiny_shapes(source, num_images=max(8, images))[:images]
    (root / "images").mkdir(parents=True)
    listed = []
    for entry in entries:
        sentences = entry["sentences"][:1]
        shutil.copy(source / "images" / entry["filename"], root / "images" / entry["filename"])
        listed.append(dict(entry, split=eval_split, sentences=sentences))
        for copy in range(copies):
            name = f"copy{copy}_{entry['filename']}"
            shutil.copy(source / "images" / entry["filename"], root / "images" / name)
            listed.append(dict(entry, filename=name, split="train", sentences=sentences))
    (root / "dataset_memorisable.json").write_text(json.dumps({"images": listed}))
    return root


def write_comma_separated_results_csv(path: Path, entries: list[dict]) -> None:
    """Flickr30k's results.csv as most GitHub copies have it: re-saved comma-separated with the header
    `image_name,comment_number,comment`, the captions that hold commas or quotes in double quotes."""
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["image_name", "comment_number", "comment"])
        writer.writerows([e["filename"], n, s["raw"]] for e in entries for n, s in enumerate(e["sentences"]))


def coco_entries(shapes_entries: list[dict]) -> list[dict]:
    """The tiny shapes images as dataset_coco.json lists COCO's: a COCO id each, Karpathy's split (its test and val
    kept, its first two train images restval) and the 2014 folder that holds them (train2014 for train, val2014
    for val, test and restval, as in Karpathy's split). Each entry also records its 2017 folder, `filepath2017`:
    val2017 holds the first test and the first restval image, train2017 the others."""
    entries = []
    restval = [entry["filename"] for entry in shapes_entries if entry["split"] == "train"][:2]
    for index, shape in enumerate(shapes_entries):
        split = "restval" if shape["filename"] in restval else shape["split"]
        cocoid = 100 + 7 * index
        folder = "train2014" if split == "train" else "val2014"
        entries.append(
            {
                "filepath": folder,
                "filename": f"COCO_{folder}_{cocoid:012d}.jpg",
                "imgid": index,
                "split": split,
                "sentences": [dict(sentence, imgid=index) for sentence in shape["sentences"]],
                "cocoid": cocoid,
                "shape": shape["filename"],  # the shapes image it is made from (not in Karpathy's file)
            }
        )
    first_test = next(entry for entry in entries if entry["split"] == "test")
    first_restval = next(entry for entry in entries if entry["split"] == "restval")
    for entry in entries:
        entry["filepath2017"] = "val2017" if entry in (first_test, first_restval) else "train2017"
    return entries


def coco_image_path(entry: dict, year: int) -> str:
    """Where COCO's `year` download holds the image of `entry`: val2014/COCO_val2014_000000000107.jpg or
    train2017/000000000107.jpg."""
    if year == 2014:
        return f"{entry['filepath']}/{entry['filename']}"
    return f"{entry['filepath2017']}/{entry['cocoid']:012d}.jpg"


def _write_coco_images(root: Path, entries: list[dict], images_from: Path, year: int) -> None:
    for entry in entries:
        path = root / coco_image_path(entry, year)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.open(images_from / entry["shape"]).convert("RGB").save(path, "JPEG")  # COCO's images are JPEGs


def karpathy_coco_json(entries: list[dict]) -> str:
    """dataset_coco.json of `entries`, as Karpathy's caption_datasets.zip has it."""
    listed = [
        {key: value for key, value in entry.items() if key not in ("shape", "filepath2017")}
        | {"sentids": [entry["imgid"] * 5 + n for n in range(len(entry["sentences"]))]}
        for entry in entries
    ]
    return json.dumps({"images": listed, "dataset": "coco"})


def write_coco_karpathy(root: Path, entries: list[dict], images_from: Path) -> Path:
    """Karpathy's dataset_coco.json in `root`, beside the train2014/ and val2014/ it names. Returns root."""
    _write_coco_images(root, entries, images_from, 2014)
    (root / "dataset_coco.json").write_text(karpathy_coco_json(entries))
    return root


def write_coco_official(
    root: Path, entries: list[dict], images_from: Path, year: int, karpathy_in: str | None = None
) -> Path:
    """COCO's official download of `year`: annotations/captions_train<year>.json and captions_val<year>.json
    with train<year>/ and val<year>/; with `karpathy_in` ("." or "annotations"), Karpathy's dataset_coco.json
    there too. The caption annotations are listed round-robin over the images, as COCO's are not grouped by
    image. Returns root."""
    _write_coco_images(root, entries, images_from, year)
    (root / "annotations").mkdir()
    for split in ("train", "val"):
        mine = [entry for entry in entries if coco_image_path(entry, year).startswith(f"{split}{year}/")]
        images = [
            {
                "license": 3,
                "file_name": coco_image_path(e, year).split("/")[1],
                "height": 64,
                "width": 64,
                "id": e["cocoid"],
            }
            for e in mine
        ]
        annotations = [
            {"image_id": entry["cocoid"], "id": 1000 * n + entry["cocoid"], "caption": sentence["raw"] + " "}
            for n in range(5)
            for entry in mine
            for sentence in entry["sentences"][n : n + 1]
        ]
        content = {"info": {"year": year}, "licenses": [], "images": images, "annotations": annotations}
        (root / "annotations" / f"captions_{split}{year}.json").write_text(json.dumps(content))
    if karpathy_in is not None:
        (root / karpathy_in / "dataset_coco.json").write_text(karpathy_coco_json(entries))
    return root
