"""Readers for the on-disk layouts of Flickr30k, each producing one common caption table.

Every reader returns an `AnnotationTable`: one row per caption with the image path (relative to the
dataset root), its split and the raw caption, plus the line numbers of rows it could not parse.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import pandas as pd

from captioning.data.images import IMAGE_SUFFIXES
from captioning.errors import DatasetFormatError, DatasetNotFoundError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# Sizes of the held-out splits of a layout that has none, as in the Karpathy split of Flickr30k.
DEFAULT_TEST_IMAGES = 1000
DEFAULT_VAL_IMAGES = 1014


@dataclass
class AnnotationTable:
    """Captions of a dataset: columns `image` (path relative to the root), `split`, `caption`."""

    captions: pd.DataFrame
    format: str
    annotation_file: Path
    malformed_lines: list[int] = field(default_factory=list)

    def describe_malformed(self, limit: int = 5) -> str:
        lines = ", ".join(str(n) for n in self.malformed_lines[:limit])
        more = " ..." if len(self.malformed_lines) > limit else ""
        return f"{self.annotation_file.name}: skipped {len(self.malformed_lines)} malformed row(s) (line {lines}{more})"


def _karpathy_files(root: Path) -> list[Path]:
    return sorted(root.glob("dataset_*.json"))


# Layout name -> how to recognise it in a dataset root.
FORMATS = {
    "karpathy": "dataset_*.json (Karpathy split)",
    "huggingface": "flickr_annotations_30k.csv (Hugging Face nlphuji/flickr30k)",
    "results_csv": "results.csv (Kaggle, pipe-separated)",
    "captions_txt": "captions.txt (Kaggle, comma-separated)",
}


def detect_format(root: Path) -> str:
    """Name the layout that `root` holds, preferring the one that carries its own split."""
    if _karpathy_files(root):
        return "karpathy"
    if (root / "flickr_annotations_30k.csv").is_file():
        return "huggingface"
    if (root / "results.csv").is_file():
        return "results_csv"
    if (root / "captions.txt").is_file():
        return "captions_txt"
    expected = ", ".join(FORMATS.values())
    raise DatasetNotFoundError(f"No Flickr30k annotations in {root}: expected one of {expected}.")


def read_annotations(root: str | Path, format: str = "auto") -> AnnotationTable:
    """Read the captions of the dataset in `root`, in `format` or the detected layout."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"Dataset root {root} does not exist. Point data.root at the folder that holds the "
            "annotations and images, or use the built-in dataset with data=shapes."
        )
    if format == "auto":
        format = detect_format(root)
    readers = {
        "karpathy": read_karpathy_json,
        "huggingface": read_huggingface_csv,
        "results_csv": read_results_csv,
        "captions_txt": read_captions_txt,
    }
    if format not in readers:
        raise DatasetFormatError(f"Unknown data.format={format!r}: use auto or one of {', '.join(readers)}.")
    table = readers[format](root)
    if table.malformed_lines:
        log.warning(table.describe_malformed())
    table.captions = _drop_unusable(table.captions, table.annotation_file.name)
    if table.captions.empty:
        raise DatasetFormatError(f"{table.annotation_file} holds no readable caption.")
    return table


def _drop_unusable(captions: pd.DataFrame, source: str) -> pd.DataFrame:
    """Drop, and report, captions without a single word and exact duplicate rows."""
    wordless = ~captions["caption"].str.contains(r"\w", regex=True)
    duplicate = captions.duplicated(["image", "split", "caption"])
    for mask, what in ((wordless, "empty or punctuation-only"), (duplicate & ~wordless, "duplicate")):
        if mask.any():
            log.warning(
                f"{source}: skipped {int(mask.sum())} {what} caption(s) (first: {captions['image'][mask].iloc[0]})"
            )
    return captions[~(wordless | duplicate)].reset_index(drop=True)


def _is_inside_root(file_name: str) -> bool:
    """False for absolute paths and paths that climb out with '..': images are read only under the root."""
    path = PurePosixPath(file_name.replace("\\", "/"))
    return not (path.is_absolute() or ".." in path.parts or PureWindowsPath(file_name).drive)


def _require(path: Path, layout: str) -> Path:
    if not path.is_file():
        raise DatasetNotFoundError(f"No {path.name} in {path.parent}: it is required by the {layout} layout.")
    return path


def _find_image_dir(root: Path, candidates: tuple[str, ...], sample_image: str) -> str:
    """The folder under `root` holding `sample_image`: one of `candidates`, possibly nested once."""
    for name in candidates:
        for folder in (root / name, root / name / name):
            if (folder / sample_image).is_file():
                return folder.relative_to(root).as_posix()
        # Some uploads nest the images one folder deeper under another name.
        if (root / name).is_dir():
            for sub in sorted(p for p in (root / name).iterdir() if p.is_dir()):
                if (sub / sample_image).is_file():
                    return sub.relative_to(root).as_posix()
    raise DatasetNotFoundError(
        f"Cannot find the images of {root}: looked for {sample_image} in "
        + ", ".join(f"{root / c}/" for c in candidates)
    )


def _table(rows: list[tuple[str, str, str]], image_dir: str) -> pd.DataFrame:
    """The common caption table; file names that would lead outside the dataset root are refused."""
    frame = pd.DataFrame(rows, columns=["image", "split", "caption"])
    inside = frame["image"].map(_is_inside_root)
    if not inside.all():
        refused = frame["image"][~inside].unique()
        log.warning(
            f"Refused {len(refused)} image file name(s) outside the dataset root (absolute or with '..'), "
            f"and their {int((~inside).sum())} caption(s): {', '.join(refused[:3])}"
        )
        frame = frame[inside]
    frame["image"] = image_dir + "/" + frame["image"]
    return frame


def read_karpathy_json(root: Path) -> AnnotationTable:
    """Karpathy's `dataset_*.json`: images[].filename, .split (restval counts as train), .sentences[].raw."""
    files = _karpathy_files(root)
    if not files:
        raise DatasetNotFoundError(f"No dataset_*.json (Karpathy split) in {root}.")
    path = files[0]
    try:
        images = json.loads(path.read_text(encoding="utf-8"))["images"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DatasetFormatError(f"{path} is not a Karpathy split file (images[] list): {error}") from error
    rows: list[tuple[str, str, str]] = []
    malformed: list[int] = []
    for index, image in enumerate(images):
        try:
            split = "train" if image["split"] == "restval" else image["split"]
            if split not in SPLITS:
                raise ValueError(split)
            captions = [sentence["raw"] for sentence in image["sentences"]]
            rows.extend((image["filename"], split, caption) for caption in captions)
        except (KeyError, TypeError, ValueError):
            malformed.append(index)  # for JSON, the index of the image entry
    if not rows:
        raise DatasetFormatError(f"{path} holds no image with a filename, a split and sentences.")
    image_dir = _find_image_dir(root, ("flickr30k_images", "images", "flickr30k-images"), rows[0][0])
    return AnnotationTable(_table(rows, image_dir), "karpathy", path, malformed)


def read_huggingface_csv(root: Path) -> AnnotationTable:
    """nlphuji/flickr30k's `flickr_annotations_30k.csv`: `raw` is a JSON list of the captions."""
    path = _require(root / "flickr_annotations_30k.csv", "Hugging Face")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"raw", "split", "filename"} - set(frame.columns)
    if missing:
        raise DatasetFormatError(f"{path} lacks the column(s) {sorted(missing)}.")
    rows: list[tuple[str, str, str]] = []
    malformed: list[int] = []
    for line, (raw, split, filename) in enumerate(zip(frame["raw"], frame["split"], frame["filename"]), 2):
        try:
            captions = json.loads(raw)
            if split not in SPLITS or not filename or not isinstance(captions, list):
                raise ValueError
        except ValueError:
            malformed.append(line)
            continue
        rows.extend((filename, split, str(caption)) for caption in captions)
    if not rows:
        raise DatasetFormatError(f"{path} holds no readable row.")
    image_dir = _find_image_dir(root, ("flickr30k-images", "flickr30k_images", "images"), rows[0][0])
    return AnnotationTable(_table(rows, image_dir), "huggingface", path, malformed)


def _is_image_name(name: str) -> bool:
    return bool(name) and name.lower().endswith(IMAGE_SUFFIXES)


def _parse_lines(path: Path, parse_row) -> tuple[list[tuple[str, str]], list[int]]:
    """(image, caption) pairs of the rows after the header that `parse_row` accepts, and the line numbers
    of those it rejects (returns None for)."""
    pairs: list[tuple[str, str]] = []
    malformed: list[int] = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        next(lines, None)  # header
        for line_number, line in enumerate(lines, 2):
            if not line.strip():
                continue
            pair = parse_row(line.rstrip("\r\n"))
            if pair is None or not _is_image_name(pair[0]) or not pair[1]:
                malformed.append(line_number)
            else:
                pairs.append(pair)
    return pairs, malformed


def _results_row(line: str) -> tuple[str, str] | None:
    parts = [part.strip() for part in line.split("|", 2)]
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], parts[2]


def _captions_txt_row(line: str) -> tuple[str, str]:
    image, _, caption = line.partition(",")
    caption = caption.strip()
    if caption.startswith('"'):
        caption = next(csv.reader([caption]))[0].strip()
    return image.strip(), caption


def read_results_csv(root: Path) -> AnnotationTable:
    """Kaggle's pipe-separated `results.csv` (`image_name| comment_number| comment`, space padded)."""
    path = _require(root / "results.csv", "Kaggle results.csv")
    pairs, malformed = _parse_lines(path, _results_row)
    return _with_split(root, pairs, path, "results_csv", malformed, ("flickr30k_images", "images"))


def read_captions_txt(root: Path) -> AnnotationTable:
    """Kaggle's comma-separated `captions.txt` (`image,caption`); captions may hold commas and quotes."""
    path = _require(root / "captions.txt", "Kaggle captions.txt")
    pairs, malformed = _parse_lines(path, _captions_txt_row)
    return _with_split(root, pairs, path, "captions_txt", malformed, ("Images", "images", "flickr30k_images"))


def _with_split(
    root: Path,
    pairs: list[tuple[str, str]],
    path: Path,
    format: str,
    malformed: list[int],
    image_dirs: tuple[str, ...],
) -> AnnotationTable:
    """Attach a split to (image, caption) pairs: the Karpathy JSON's when present, else a hashed one."""
    if not pairs:
        raise DatasetFormatError(f"{path} holds no readable row.")
    images = sorted({image for image, _ in pairs})
    karpathy = _karpathy_files(root)
    if karpathy:
        split_of = {
            entry["filename"]: "train" if entry["split"] == "restval" else entry["split"]
            for entry in json.loads(karpathy[0].read_text(encoding="utf-8"))["images"]
        }
        unknown = [image for image in images if image not in split_of]
        if unknown:
            log.warning(
                f"{len(unknown)} image(s) of {path.name} are not in {karpathy[0].name}; "
                f"they are used for training (first: {unknown[0]})"
            )
    else:
        split_of = deterministic_split(images)
    rows = [(image, split_of.get(image, "train"), caption) for image, caption in pairs]
    image_dir = _find_image_dir(root, image_dirs, pairs[0][0])
    return AnnotationTable(_table(rows, image_dir), format, path, malformed)


def deterministic_split(
    images: list[str], test_images: int = DEFAULT_TEST_IMAGES, val_images: int = DEFAULT_VAL_IMAGES
) -> dict[str, str]:
    """Split images by the hash of their name: the same on every machine, whatever the file order.

    Test and val take `test_images` and `val_images` images (at most a tenth of the data each, at least one).
    """
    ordered = sorted(images, key=lambda name: hashlib.sha256(name.encode("utf-8")).hexdigest())
    test_count = min(test_images, max(1, len(ordered) // 10))
    val_count = min(val_images, max(1, len(ordered) // 10))
    split_of = {}
    for position, image in enumerate(ordered):
        if position < test_count:
            split_of[image] = "test"
        elif position < test_count + val_count:
            split_of[image] = "val"
        else:
            split_of[image] = "train"
    return split_of
