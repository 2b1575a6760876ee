"""Tiny datasets written in the exact on-disk layouts of Flickr30k's popular downloads."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pandas as pd

from captioning.data.shapes import generate_shapes_dataset

LAYOUTS = ("karpathy", "results_csv", "huggingface", "captions_txt")


def tiny_shapes(root: Path, num_images: int = 12, image_size: int = 64) -> list[dict]:
    """Generate a tiny shapes dataset in `root`; returns its Karpathy image entries."""
    generate_shapes_dataset(root, num_images=num_images, val_images=2, test_images=2, image_size=image_size)
    return json.loads((root / "dataset_shapes.json").read_text())["images"]


def write_layout(root: Path, layout: str, entries: list[dict], images_from: Path) -> Path:
    """Write `entries` (Karpathy image entries) as `layout` in `root`, copying their images; returns root."""
    image_dirs = {
        "karpathy": "flickr30k_images",
        "results_csv": "flickr30k_images/flickr30k_images",  # Kaggle's upload nests it once more
        "huggingface": "flickr30k-images",
        "captions_txt": "Images",
    }
    image_dir = root / image_dirs[layout]
    image_dir.mkdir(parents=True)
    for entry in entries:
        shutil.copy(images_from / entry["filename"], image_dir / entry["filename"])
    if layout == "karpathy":
        (root / "dataset_flickr30k.json").write_text(json.dumps({"dataset": "flickr30k", "images": entries}))
    elif layout == "results_csv":
        lines = ["image_name| comment_number| comment"]
        for entry in entries:
            for number, sentence in enumerate(entry["sentences"]):
                lines.append(f"{entry['filename']}| {number}| {sentence['raw']}")
        (root / "results.csv").write_text("\n".join(lines) + "\n")
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
        pd.DataFrame(rows).to_csv(root / "flickr_annotations_30k.csv", index=False)
    elif layout == "captions_txt":
        with (root / "captions.txt").open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["image", "caption"])
            for entry in entries:
                for sentence in entry["sentences"]:
                    writer.writerow([entry["filename"], sentence["raw"]])
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
