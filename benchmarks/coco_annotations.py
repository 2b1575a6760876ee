"""Reading COCO-sized annotations: time and peak memory of `read_annotations` on Karpathy's dataset_coco.json and on
the official captions_train2014.json + captions_val2014.json.

python benchmarks/coco_annotations.py [--folder DIR] [--images 123287] [--captions 616767]

Writes (once) synthetic annotation files of COCO's size into --folder, with Karpathy's split (82,783 train,
5,000 val, 5,000 test, 30,504 restval) and empty train2014/ and val2014/ folders: no image is needed to read the
annotations. Each layout is then read in a fresh interpreter (so that writing the files does not count): the
time of the reader alone (JSON -> rows) and of `read_annotations` (rows -> the caption table, split and checks
included), the growth of the peak resident memory over the interpreter's after its imports, and the peak of
Python's own allocations (tracemalloc, in a second pass).
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file (python benchmarks/x.py): make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import random
import resource
import subprocess
import tempfile
import time
import tracemalloc

WORDS = (
    "a man woman dog cat group of people sitting standing on top the table with plate food pizza street sign bus "
    "train riding wave surfboard bathroom sink toilet kitchen cake giraffe elephant field grass next to near"
).split()
SPLITS = {"train": 82_783, "val": 5_000, "test": 5_000, "restval": 30_504}  # Karpathy's split of COCO


def caption(generator: random.Random) -> str:
    return " ".join(generator.choices(WORDS, k=generator.randint(8, 14))).capitalize() + "."


def write_annotations(folder: Path, images: int, captions: int) -> None:
    """dataset_coco.json and annotations/captions_{train,val}2014.json of `images` images and `captions` captions
    (the first images get one caption more each until the count is reached), unless they exist."""
    karpathy, annotations = folder / "dataset_coco.json", folder / "annotations"
    if karpathy.is_file() and (annotations / "captions_val2014.json").is_file():
        return
    generator = random.Random(0)
    splits = [split for split, count in SPLITS.items() for _ in range(count)]
    generator.shuffle(splits)  # Karpathy's proportions for any --images, his counts for COCO's 123,287
    splits = (splits * (images // len(splits) + 1))[:images]
    base, extra = divmod(captions, images)
    entries, official = [], {"train": {"images": [], "annotations": []}, "val": {"images": [], "annotations": []}}
    for index, split in enumerate(splits):
        cocoid = 9 + 3 * index
        folder_name = "train2014" if split == "train" else "val2014"
        file_name = f"COCO_{folder_name}_{cocoid:012d}.jpg"
        texts = [caption(generator) for _ in range(base + (index < extra))]
        sentences = [{"tokens": text.lower().rstrip(".").split(), "raw": text, "imgid": index} for text in texts]
        entries.append(
            {"filepath": folder_name, "filename": file_name, "imgid": index, "split": split, "sentences": sentences}
            | {"cocoid": cocoid}
        )
        part = official[folder_name[:-4]]
        part["images"].append({"license": 1, "file_name": file_name, "height": 480, "width": 640, "id": cocoid})
        part["annotations"] += [{"image_id": cocoid, "id": len(part["annotations"]), "caption": t} for t in texts]
    for name in ("train2014", "val2014"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    annotations.mkdir(exist_ok=True)
    for split, content in official.items():
        (annotations / f"captions_{split}2014.json").write_text(json.dumps(content))
    karpathy.write_text(json.dumps({"images": entries, "dataset": "coco"}))


def measure(folder: Path, layout: str) -> dict:
    """Run in a fresh interpreter: the figures of reading `folder` in `layout`."""
    from captioning.data.readers import READERS, find_annotation_file, read_annotations

    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    path, _ = find_annotation_file(folder, layout)
    start = time.perf_counter()
    table = read_annotations(folder, layout)
    table_seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    rows, _ = READERS[layout](path)
    reader_seconds = time.perf_counter() - start
    del rows, table
    tracemalloc.start()
    table = read_annotations(folder, layout)
    python_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "layout": layout,
        "annotation_MB": round(sum(file.stat().st_size for file in _files(path, layout)) / 1e6, 1),
        "images": int(table.captions["image"].nunique()),
        "captions": len(table.captions),
        "splits": {
            split: int(count)
            for split, count in table.captions.drop_duplicates("image")["split"].value_counts().items()
        },
        "reader_s": round(reader_seconds, 2),
        "read_annotations_s": round(table_seconds, 2),
        "peak_rss_growth_MB": round((peak_kb - baseline_kb) / 1024, 1),
        "tracemalloc_peak_MB": round(python_peak / 2**20, 1),
    }


def _files(path: Path, layout: str) -> list[Path]:
    return sorted(path.parent.glob("captions_*2014.json")) if layout == "coco_captions" else [path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "coco_annotations_benchmark")
    parser.add_argument("--images", type=int, default=123_287)
    parser.add_argument("--captions", type=int, default=616_767)
    parser.add_argument("--measure", choices=["karpathy", "coco_captions"], help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        from benchmarks.common import report

        report(
            measure(arguments.folder, arguments.measure), {"images": arguments.images, "captions": arguments.captions}
        )
        return
    start = time.perf_counter()
    write_annotations(arguments.folder, arguments.images, arguments.captions)
    print(f"annotations in {arguments.folder} ({time.perf_counter() - start:.1f} s to write)", file=sys.stderr)
    for layout in ("karpathy", "coco_captions"):
        command = [sys.executable, __file__, "--folder", str(arguments.folder), "--measure", layout]
        command += ["--images", str(arguments.images), "--captions", str(arguments.captions)]
        print(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
