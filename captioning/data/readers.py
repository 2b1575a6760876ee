"""Readers for the on-disk layouts of Flickr8k and Flickr30k, each producing one common caption table.

Each layout has one reader that turns its annotation file into rows (image, split, caption); the common part
finds the file (in the root or one folder down), the image folder (by the images it holds) and the split of
the layouts without one, and reports every row and image it leaves out.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import pandas as pd

from captioning.data.images import IMAGE_SUFFIXES
from captioning.data.shapes import ANNOTATION_FILE as GENERATED_ANNOTATION_FILE
from captioning.errors import DatasetFormatError, DatasetNotFoundError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# Sizes of the held-out splits of a layout that has none, as in the Karpathy split of Flickr30k.
DEFAULT_TEST_IMAGES = 1000
DEFAULT_VAL_IMAGES = 1014
# Flickr8k's official split lists, `Flickr_8k.<kind>Images.txt`: kind -> split.
SPLIT_LISTS = {"train": "train", "dev": "val", "test": "test"}
# A reader's row: image file name, split (None for layouts without one), caption (None: listed without one).
Row = tuple[str, str | None, str | None]


@dataclass
class AnnotationTable:
    """Captions of a dataset: columns `image` (path relative to the root), `split`, `caption`."""

    captions: pd.DataFrame
    format: str
    annotation_file: Path
    malformed_lines: list[int] = field(default_factory=list)
    skipped_images: list[dict] = field(default_factory=list)  # {"image", "reason"} of images left out here


def _first_lines(numbers: list[int], limit: int = 5) -> str:
    return ", ".join(str(n) for n in numbers[:limit]) + (" ..." if len(numbers) > limit else "")


def describe_malformed(path: Path, malformed: list[int]) -> str:
    """The warning for the rows of `path` that could not be parsed: their count and first line numbers."""
    return f"{path.name}: skipped {len(malformed)} malformed row(s) (line {_first_lines(malformed)})"


@dataclass(frozen=True)
class Layout:
    """An annotation layout: the names of its file, and for line-based layouts what one row looks like."""

    files: tuple[str, ...]  # glob patterns of the annotation file, most specific first
    description: str
    row: str = ""  # a line-based layout's row, as error messages show it
    separator: str = ""  # between the fields of a row
    header: bool = False  # a line-based file may start with a header (a first line that is not a row)

    def describe_row(self) -> str:
        header = "after a header line" if self.header else "with no header"
        return f"`{self.row}`, fields separated by {self.separator!r}, {header}"

    def match(self, file_names: list[str], generated: bool = False) -> str | None:
        """The name of this layout's annotation file among `file_names` (never a lemmatised copy, and the
        built-in dataset's generated file only if `generated`), or None."""
        if not generated:
            file_names = [name for name in file_names if name != GENERATED_ANNOTATION_FILE]
        for pattern in self.files:
            matches = [name for name in fnmatch.filter(file_names, pattern) if "lemma" not in name.lower()]
            if matches:
                return sorted(matches)[0]
        return None


# In order of preference: the layouts that carry their own split first.
LAYOUTS = {
    "karpathy": Layout(("dataset_*.json",), "dataset_*.json (Karpathy split)"),
    "huggingface": Layout(("flickr_annotations_30k.csv",), "flickr_annotations_30k.csv (Hugging Face)"),
    "token": Layout(
        ("*.token", "*.token.txt"),
        "results_20130124.token or Flickr8k.token.txt (official Flickr30k, Flickr8k)",
        "<image>#<n><TAB><caption>",
        "\t",
    ),
    "results_csv": Layout(
        ("results.csv",), "results.csv (Kaggle Flickr30k)", "image_name| comment_number| comment", "|", True
    ),
    "captions_txt": Layout(
        ("captions.txt",), "captions.txt (Kaggle Flickr8k or Flickr30k)", "image,caption", ",", True
    ),
}


def _listing(folder: Path) -> tuple[list[str], list[str]]:
    """Names of the sub-folders and of the files in `folder` (hidden ones and macOS archive debris left out)."""
    folders, files = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith((".", "__MACOSX")):
                continue
            (folders if entry.is_dir() else files).append(entry.name)
    return sorted(folders), files


def _describe_contents(folder: Path, limit: int = 8) -> str:
    """What `folder` holds, for error messages: its first entries, folders marked with a slash."""
    folders, files = _listing(folder)
    entries = [f"{name}/" for name in folders] + sorted(files)
    if not entries:
        return "it is empty"
    more = f" and {len(entries) - limit} more" if len(entries) > limit else ""
    return "it holds " + ", ".join(entries[:limit]) + more


def find_annotation_file(root: Path, format: str = "auto", generated: bool = False) -> tuple[Path, str]:
    """The annotation file of `format` (any layout for auto) and its layout, in `root` or one folder down
    (where an archive unpacks into a folder of its own). The built-in dataset's generated `dataset_shapes.json`
    counts only for a `generated` root: a Flickr run never reads it."""
    wanted = LAYOUTS if format == "auto" else {format: LAYOUTS[format]}
    for folder in (root, *(root / name for name in _listing(root)[0])):
        file_names = _listing(folder)[1]
        for name, layout in wanted.items():
            file_name = layout.match(file_names, generated)
            if file_name is not None:
                return folder / file_name, name
    expected = ", ".join(layout.description for layout in wanted.values())
    ignored = (
        f" ({GENERATED_ANNOTATION_FILE}, the built-in dataset's, is never read for other data)"
        if not generated and (root / GENERATED_ANNOTATION_FILE).is_file()
        else ""
    )
    raise DatasetNotFoundError(
        f"No annotations in {root} nor in the folders inside it: expected {'one of ' if len(wanted) > 1 else ''}"
        f"{expected}, but {_describe_contents(root)}{ignored}. Point data.root at the folder that holds the "
        "annotation file (or its parent)."
    )


def detect_format(root: Path, generated: bool = False) -> str:
    """Name the layout that `root` holds, preferring the one that carries its own split."""
    return find_annotation_file(root, generated=generated)[1]


def read_annotations(root: str | Path, format: str = "auto", generated: bool = False) -> AnnotationTable:
    """Read the captions of the dataset in `root`, in `format` or the detected layout; `generated`: `root` holds
    the built-in dataset, whose generated annotation file is read only then."""
    root = Path(root)
    if root.is_file():
        raise DatasetNotFoundError(
            f"data.root={root} is a file, not a folder: data.root is the folder that holds the annotations and "
            f"images, e.g. data.root={root.parent}."
        )
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"Dataset root {root} does not exist. Point data.root at the folder that holds the "
            "annotations and images, or use the built-in dataset with data=shapes."
        )
    if format != "auto" and format not in LAYOUTS:
        raise DatasetFormatError(f"Unknown data.format={format!r}: use auto or one of {', '.join(LAYOUTS)}.")
    path, format = find_annotation_file(root, format, generated)
    log.info(f"Annotations: {path} (data.format={format})")
    rows, malformed = READERS[format](path)
    if not rows:
        raise _nothing_readable(path, format, malformed)
    if malformed:
        log.warning(describe_malformed(path, malformed))
    if rows[0][1] is None:  # a line-based layout: no split of its own
        rows = _with_split(rows, path, root)
    image_dir = _find_image_dir(root, path.parent, {image for image, _, _ in rows})
    captions, skipped = _table(rows, image_dir)
    captions, uncaptioned = _drop_unusable(captions, path.name)
    skipped += [{"image": image, "reason": "no caption"} for image in uncaptioned]
    if captions.empty:
        raise DatasetFormatError(f"{path} holds no readable caption.")
    return AnnotationTable(captions, format, path, malformed, skipped)


def _nothing_readable(path: Path, format: str, malformed: list[int]) -> DatasetFormatError:
    """The error for a file without one readable row: what a row should be, and what the file's lines are."""
    layout = LAYOUTS[format]
    if not layout.row:
        return DatasetFormatError(f"{path} holds no image with a file name, a split and captions.")
    with path.open(encoding="utf-8-sig", errors="replace") as file:
        first = [line.rstrip("\r\n")[:100] for line, _ in zip(file, range(3))]
    return DatasetFormatError(
        f"{path} holds no readable row: none of its {len(malformed)} line(s) is a {format} row "
        f"(line {_first_lines(malformed)}). A {format} row is {layout.describe_row()}; the file begins with "
        f"{' / '.join(repr(line) for line in first)}. Save it in that form, or name its layout with data.format=."
    )


def _drop_unusable(captions: pd.DataFrame, source: str) -> tuple[pd.DataFrame, list[str]]:
    """Drop, and report, captions without a single word and duplicate captions of one image (the same text again
    for the same image, whatever else its row says, such as its comment number); returns the captions left and
    the images left without any (listed with no caption, or with unusable ones only)."""
    listed_only = captions["caption"].isna()
    wordless = ~listed_only & ~captions["caption"].fillna("").str.contains(r"\w", regex=True)
    duplicate = ~listed_only & captions.duplicated(["image", "split", "caption"])
    for mask, what in (
        (wordless, "empty or punctuation-only caption(s)"),
        (duplicate & ~wordless, "duplicate caption(s) of one image, the same text given again for the same image"),
    ):
        if mask.any():
            log.warning(f"{source}: skipped {int(mask.sum())} {what} (first: {captions['image'][mask].iloc[0]})")
    kept = captions[~(listed_only | wordless | duplicate)].reset_index(drop=True)
    images = captions.drop_duplicates("image")
    lost = images[~images["image"].isin(kept["image"])]
    if not lost.empty:
        counts = lost["split"].value_counts()
        log.warning(
            f"{source}: {len(lost)} image(s) have no usable caption and are left out ("
            + ", ".join(f"{split} {counts.get(split, 0)}" for split in SPLITS)
            + f"; first: {', '.join(lost['image'][:5])})"
        )
    return kept, lost["image"].tolist()


def _is_inside_root(file_name: str) -> bool:
    """False for absolute paths and paths that climb out with '..': images are read only under the root."""
    path = PurePosixPath(file_name.replace("\\", "/"))
    return not (path.is_absolute() or ".." in path.parts or PureWindowsPath(file_name).drive)


def _find_image_dir(root: Path, annotation_dir: Path, images: set[str]) -> str:
    """The folder (relative to `root`) holding most of `images`: searched in `root` and the annotation file's
    folder, and two levels below them. The images it lacks are reported as missing later, not here."""
    names = {image.replace("\\", "/").split("/")[0] for image in images}
    candidates: dict[Path, int] = {}
    for top in dict.fromkeys((root, annotation_dir)):
        pending = [(top, 0)]
        while pending:
            folder, depth = pending.pop()
            folders, files = _listing(folder)
            candidates[folder] = len(names.intersection(files)) + len(names.intersection(folders))
            if depth < 2:
                pending += [(folder / name, depth + 1) for name in folders]
    best = min(candidates, key=lambda folder: (-candidates[folder], len(folder.parts), str(folder)))
    if candidates[best] == 0:
        example = sorted(images)[0]
        raise DatasetNotFoundError(
            f"Cannot find the images of {root}: none of the {len(images)} images named in the annotations "
            f"(such as {example}) is in {root} or in the folders two levels below it ({_describe_contents(root)}). "
            "Put the image folder beside the annotation file."
        )
    log.info(f"Images: {best}/ holds {candidates[best]} of the {len(images)} images named in the annotations")
    return best.relative_to(root).as_posix()


def _table(rows: list[Row], image_dir: str) -> tuple[pd.DataFrame, list[dict]]:
    """The common caption table, and the images refused because their names lead outside the dataset root."""
    frame = pd.DataFrame(rows, columns=["image", "split", "caption"])
    inside = frame["image"].map({image: _is_inside_root(image) for image in frame["image"].unique()})
    refused = frame["image"][~inside].unique().tolist()
    if refused:
        log.warning(
            f"Refused {len(refused)} image file name(s) outside the dataset root (absolute or with '..'), "
            f"and their {int((~inside).sum())} caption(s): {', '.join(refused[:3])}"
        )
        frame = frame[inside].reset_index(drop=True)
    if image_dir != ".":
        frame["image"] = image_dir + "/" + frame["image"]
    return frame, [{"image": image, "reason": "outside the dataset root"} for image in refused]


def _split_name(split: str) -> str:
    return "train" if split == "restval" else split


def read_karpathy_json(path: Path) -> tuple[list[Row], list[int]]:
    """Karpathy's `dataset_*.json`: images[].filename, .split (restval counts as train), .sentences[].raw."""
    try:
        images = json.loads(path.read_text(encoding="utf-8-sig"))["images"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DatasetFormatError(f"{path} is not a Karpathy split file (images[] list): {error}") from error
    rows: list[Row] = []
    malformed: list[int] = []
    for index, image in enumerate(images):
        try:
            split = _split_name(image["split"])
            if split not in SPLITS or not image["filename"]:
                raise ValueError(split)
            captions = [sentence["raw"] for sentence in image["sentences"]] or [None]
            rows.extend((image["filename"], split, caption) for caption in captions)
        except (KeyError, TypeError, ValueError):
            malformed.append(index)  # for JSON, the index of the image entry
    return rows, malformed


def read_huggingface_csv(path: Path) -> tuple[list[Row], list[int]]:
    """nlphuji/flickr30k's `flickr_annotations_30k.csv`: `raw` is a JSON list of the captions."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"raw", "split", "filename"} - set(frame.columns)
    if missing:
        raise DatasetFormatError(f"{path} lacks the column(s) {sorted(missing)}.")
    rows: list[Row] = []
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
        if not captions:
            rows.append((filename, split, None))
    return rows, malformed


def _is_image_name(name: str) -> bool:
    """An image file name, also as a repeated download names it (Flickr8k lists `...jpg.1`)."""
    stem, dot, copy_number = name.rpartition(".")
    if dot and copy_number.isdigit():
        name = stem
    return bool(name) and name.lower().endswith(IMAGE_SUFFIXES)


def _parse_lines(
    path: Path, parse_row: Callable[[str], tuple[str, str] | None], header: bool
) -> tuple[list[Row], list[int]]:
    """Rows of the lines that `parse_row` accepts, and the line numbers of those it rejects (returns None
    for). With `header`, a first line that is not a row is the header, unless no line is a row."""
    rows: list[Row] = []
    malformed: list[int] = []
    with path.open(encoding="utf-8-sig", errors="replace") as lines:  # any line ending; a BOM is dropped
        for line_number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            pair = parse_row(line.rstrip("\r\n"))
            if pair is None or not _is_image_name(pair[0]) or not pair[1]:
                malformed.append(line_number)
            else:
                rows.append((pair[0], None, pair[1]))
    if header and rows and malformed[:1] == [1]:
        malformed.pop(0)
    return rows, malformed


def _token_row(line: str) -> tuple[str, str] | None:
    key, tab, caption = line.partition("\t")
    image, hash_sign, number = key.rpartition("#")
    if not tab or not hash_sign or not number.strip().isdigit():
        return None
    return image.strip(), caption.strip()


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


def read_token_file(path: Path) -> tuple[list[Row], list[int]]:
    """The official `results_20130124.token` (Flickr30k) or `Flickr8k.token.txt`: `<image>#<n><TAB><caption>`."""
    return _parse_lines(path, _token_row, LAYOUTS["token"].header)


def read_results_csv(path: Path) -> tuple[list[Row], list[int]]:
    """Kaggle's pipe-separated `results.csv` (`image_name| comment_number| comment`, space padded)."""
    return _parse_lines(path, _results_row, LAYOUTS["results_csv"].header)


def read_captions_txt(path: Path) -> tuple[list[Row], list[int]]:
    """Kaggle's comma-separated `captions.txt` (`image,caption`); captions may hold commas and quotes."""
    return _parse_lines(path, _captions_txt_row, LAYOUTS["captions_txt"].header)


READERS: dict[str, Callable[[Path], tuple[list[Row], list[int]]]] = {
    "karpathy": read_karpathy_json,
    "huggingface": read_huggingface_csv,
    "token": read_token_file,
    "results_csv": read_results_csv,
    "captions_txt": read_captions_txt,
}


def _split_beside(folder: Path) -> tuple[dict[str, str], str] | None:
    """The split that a folder gives the split-less annotation file in or under it, and where it comes from: a
    Karpathy JSON, else Flickr8k's official lists (`Flickr_8k.trainImages.txt`, `.devImages.txt`, `.testImages.txt`)."""
    karpathy = LAYOUTS["karpathy"].match(_listing(folder)[1])  # never the built-in dataset's generated file
    if karpathy is not None:
        rows, _ = read_karpathy_json(folder / karpathy)
        return {image: split for image, split, _ in rows}, karpathy
    lists = [
        (split, file) for kind, split in SPLIT_LISTS.items() for file in sorted(folder.glob(f"*.{kind}Images.txt"))
    ]
    if not lists:
        return None
    split_of = {}
    for split, file in lists:
        names = file.read_text(encoding="utf-8-sig", errors="replace").split()  # one name a line
        split_of.update(dict.fromkeys(names, split))
    return split_of, ", ".join(file.name for _, file in lists)


def _with_split(rows: list[Row], path: Path, root: Path) -> list[Row]:
    """Give split-less rows a split: the one beside the annotation file or in the root when there is one, else
    a hashed one."""
    images = sorted({image for image, _, _ in rows})
    beside = _split_beside(path.parent) or _split_beside(root)
    if beside is None:
        split_of = deterministic_split(images)
    else:
        split_of, source = beside
        unknown = [image for image in images if image not in split_of]
        if unknown:
            log.warning(
                f"{len(unknown)} image(s) of {path.name} are not in {source}; they are used for training "
                f"(first: {', '.join(unknown[:3])})"
            )
    return [(image, split_of.get(image, "train"), caption) for image, _, caption in rows]


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
