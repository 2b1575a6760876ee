"""Readers for the on-disk layouts of Flickr8k, Flickr30k and COCO, each producing one common caption table.

Each layout has one reader that turns its annotation file into rows (image, split, caption); the common part
finds the file (in the root or one folder down), the image folder (by the images it holds) and the split of
the layouts without one (or, for COCO's official files, without Karpathy's), and reports every row and image
it leaves out.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
# What becomes of Karpathy's `restval` images (COCO's val2014 images outside his val and test, 30,504):
# trained on, as his own code and most papers do, or left out.
RESTVAL_CHOICES = ("train", "drop")
# COCO's official files without a Karpathy split: val and test take this many of the val images each (half of
# them when there are fewer than twice as many, as val2017's 5,000), the rest are restval, as in Karpathy's.
COCO_HELD_OUT_IMAGES = 5000
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
    description: str  # the file names it reads first, as error messages show them
    rows: tuple[tuple[str, str], ...] = ()  # a line-based layout's row forms: (row, separator between its fields)
    header: bool = False  # a line-based file may start with a header (a first line that is not a row)
    # Looked for in every folder searched before the other layouts are: COCO's official files in annotations/
    # win over a dataset_coco.json in the root, which then gives them its split.
    outranks_nearer: bool = False

    def describe_row(self) -> str:
        header = "after a header line" if self.header else "with no header"
        forms = ", or ".join(f"`{row}`, fields separated by {separator!r}" for row, separator in self.rows)
        return f"{forms}, {header}"

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
    "karpathy": Layout(("dataset_*.json",), "dataset_*.json (Karpathy split, e.g. dataset_coco.json)"),
    "coco_captions": Layout(
        ("captions_train20[0-9][0-9].json", "captions_val20[0-9][0-9].json"),
        "captions_train2014.json and captions_val2014.json, or their 2017 versions (official COCO, in annotations/)",
        outranks_nearer=True,
    ),
    "huggingface": Layout(("flickr_annotations_30k.csv",), "flickr_annotations_30k.csv (Hugging Face)"),
    "token": Layout(
        ("*.token", "*.token.txt"),
        "results_20130124.token or Flickr8k.token.txt (official Flickr30k, Flickr8k)",
        (("<image>#<n><TAB><caption>", "\t"),),
    ),
    "results_csv": Layout(
        ("results.csv",),
        "results.csv (Kaggle Flickr30k, '|'- or comma-separated)",
        (("image_name| comment_number| comment", "|"), ("image_name,comment_number,comment", ",")),
        True,
    ),
    "captions_txt": Layout(
        ("captions.txt",), "captions.txt (Kaggle Flickr8k or Flickr30k)", (("image,caption", ","),), True
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
    (where an archive unpacks into a folder of its own, or COCO's annotations/). The built-in dataset's generated
    `dataset_shapes.json` counts only for a `generated` root: a Flickr or COCO run never reads it."""
    wanted = LAYOUTS if format == "auto" else {format: LAYOUTS[format]}
    folders = [root, *(root / name for name in _listing(root)[0])]
    file_names = {folder: _listing(folder)[1] for folder in folders}
    for outranking in (True, False):  # the layouts that outrank nearer ones first, in every folder
        layouts = {name: layout for name, layout in wanted.items() if layout.outranks_nearer == outranking}
        for folder in folders:
            for name, layout in layouts.items():
                file_name = layout.match(file_names[folder], generated)
                if file_name is not None:
                    return folder / file_name, name
    if format == "auto":
        expected = "expected one of " + ", ".join(layout.description for layout in wanted.values())
    else:
        expected = f"data.format={format} reads only {LAYOUTS[format].description}"
    ignored = (
        f" ({GENERATED_ANNOTATION_FILE}, the built-in dataset's, is never read for other data)"
        if not generated and (root / GENERATED_ANNOTATION_FILE).is_file()
        else ""
    )
    raise DatasetNotFoundError(
        f"No annotations in {root} nor in the folders inside it: {expected}, but {_describe_contents(root)}"
        f"{ignored}. Point data.root at the folder that holds the annotation file (or its parent)"
        + ("." if format == "auto" else ", or detect the layout with data.format=auto.")
    )


def detect_format(root: Path, generated: bool = False) -> str:
    """Name the layout that `root` holds, preferring the one that carries its own split."""
    return find_annotation_file(root, generated=generated)[1]


def read_annotations(
    root: str | Path, format: str = "auto", generated: bool = False, restval: str = "train"
) -> AnnotationTable:
    """Read the captions of the dataset in `root`, in `format` or the detected layout; `generated`: `root` holds
    the built-in dataset, whose generated annotation file is read only then; `restval`: Karpathy's restval images
    are trained on (`train`) or left out (`drop`)."""
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
    if restval not in RESTVAL_CHOICES:
        raise DatasetFormatError(f"Unknown data.restval={restval!r}: use {' or '.join(RESTVAL_CHOICES)}.")
    path, format = find_annotation_file(root, format, generated)
    log.info(f"Annotations: {path} (data.format={format})")
    rows, malformed = READERS[format](path)
    if not rows:
        raise _nothing_readable(path, format, malformed)
    if malformed:
        log.warning(describe_malformed(path, malformed))
    if rows[0][1] is None:  # a line-based layout: no split of its own
        rows = _with_split(rows, path, root)
    elif format == "coco_captions":  # COCO's own train and val: Karpathy's split when there is one
        rows = _coco_split(rows, path, root)
    rows = _resolve_restval(rows, restval, path.name)
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
    if not layout.rows:
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
    """False for absolute paths (a drive or a UNC share included) and paths that climb out with '..': images are
    read only under the root. String tests, not pathlib (4 s for COCO's 123,287 names)."""
    path = file_name.replace("\\", "/")
    return not (path.startswith("/") or path[1:2] == ":" or ".." in path.split("/"))


COCO_2017_HINT = (
    " dataset_coco.json names COCO's 2014 images (train2014/, val2014/), not the 2017 ones: beside train2017/ and "
    "val2017/, put the official annotations/captions_train2017.json and captions_val2017.json, and dataset_coco.json "
    "gives them its split."
)


def _holds_coco_2017_images(root: Path, annotation_dir: Path) -> bool:
    """Whether COCO's 2017 image folders are in `root` or beside the annotation file."""
    return any((folder / name).is_dir() for folder in (root, annotation_dir) for name in ("train2017", "val2017"))


def _find_image_dir(root: Path, annotation_dir: Path, images: set[str]) -> str:
    """The folder (relative to `root`) holding most of `images`: searched in `root` and the annotation file's
    folder, and two levels below them. The images it lacks are reported as missing later, not here."""
    # images per first path component: a COCO image `train2014/x.jpg` is found through its folder train2014/
    names = Counter(image.replace("\\", "/").split("/")[0] for image in images)
    candidates: dict[Path, int] = {}
    for top in dict.fromkeys((root, annotation_dir)):
        pending = [(top, 0)]
        while pending:
            folder, depth = pending.pop()
            folders, files = _listing(folder)
            candidates[folder] = sum(names[name] for name in (*files, *folders) if name in names)
            if depth < 2:
                pending += [(folder / name, depth + 1) for name in folders]
    best = min(candidates, key=lambda folder: (-candidates[folder], len(folder.parts), str(folder)))
    if candidates[best] == 0:
        example = sorted(images)[0]
        raise DatasetNotFoundError(
            f"Cannot find the images of {root}: none of the {len(images)} images named in the annotations "
            f"(such as {example}) is in {root} or in the folders two levels below it ({_describe_contents(root)}). "
            "Put the image folder beside the annotation file."
            + (
                COCO_2017_HINT
                if names.keys() & {"train2014", "val2014"} and _holds_coco_2017_images(root, annotation_dir)
                else ""
            )
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


def _karpathy_images(path: Path) -> list:
    """The `images` list of a Karpathy split file."""
    try:
        images = json.loads(path.read_text(encoding="utf-8-sig"))["images"]
        if not isinstance(images, list):
            raise TypeError(f"images is a {type(images).__name__}")
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DatasetFormatError(f"{path} is not a Karpathy split file (images[] list): {error}") from error
    return images


def _sentence_text(sentence: dict) -> str:
    return sentence["raw"] if "raw" in sentence else " ".join(sentence["tokens"])


def read_karpathy_json(path: Path) -> tuple[list[Row], list[int]]:
    """Karpathy's `dataset_*.json`: images[].filename, under .filepath where given (COCO's `train2014`, `val2014`),
    .split (train, val, test or restval), .sentences[].raw (else its .tokens, joined)."""
    rows: list[Row] = []
    malformed: list[int] = []
    for index, image in enumerate(_karpathy_images(path)):
        try:
            split, file_name, folder = image["split"], image["filename"], image.get("filepath")
            if split not in (*SPLITS, "restval") or not file_name or not isinstance(file_name, str):
                raise ValueError(split)
            name = f"{folder}/{file_name}" if folder else file_name
            captions = [_sentence_text(sentence) for sentence in image["sentences"]] or [None]
            rows.extend((name, split, caption) for caption in captions)
        except (AttributeError, KeyError, TypeError, ValueError):
            malformed.append(index)  # for JSON, the index of the image entry
    return rows, malformed


def read_coco_captions(path: Path) -> tuple[list[Row], list[int]]:
    """COCO's official `captions_train<year>.json` and `captions_val<year>.json` (whichever of them `path` is,
    with the other beside it): images[].id and .file_name, annotations[].image_id and .caption. An image is
    `<train|val><year>/<file_name>`, in the split its file names; `_coco_split` gives val its val and test."""
    year = path.stem[-4:]
    rows: list[Row] = []
    for split in ("train", "val"):
        file = path.parent / f"captions_{split}{year}.json"
        if not file.is_file():
            log.warning(f"{file.name} is not beside {path.name}: COCO {year}'s {split} images are left out")
            continue
        try:
            content = json.loads(file.read_text(encoding="utf-8-sig"))
            images, annotations = list(content["images"]), list(content["annotations"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise DatasetFormatError(
                f"{file} is not a COCO caption file (images[] and annotations[] lists): {error!r}"
            ) from error
        file_of: dict[int, str] = {}
        bad_images = []
        for index, image in enumerate(images):
            try:
                file_of[image["id"]] = f"{split}{year}/{image['file_name']}"
            except (KeyError, TypeError):
                bad_images.append(index)
        captions_of: dict[int, list[str]] = defaultdict(list)
        bad_annotations = []
        for index, annotation in enumerate(annotations):
            try:
                if annotation["image_id"] not in file_of or not isinstance(annotation["caption"], str):
                    raise ValueError
                captions_of[annotation["image_id"]].append(annotation["caption"].strip())
            except (KeyError, TypeError, ValueError):
                bad_annotations.append(index)
        for entries, bad in (("images", bad_images), ("annotations", bad_annotations)):
            if bad:
                log.warning(
                    f"{file.name}: skipped {len(bad)} malformed {entries}[] entries, or entries of an image it does "
                    f"not list (index {_first_lines(bad)})"
                )
        rows += [
            (name, split, caption)
            for image_id, name in file_of.items()
            for caption in captions_of.get(image_id) or [None]
        ]
    return rows, []  # the malformed entries of both files are reported above, by file


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


def _results_comma_row(line: str) -> tuple[str, str] | None:
    parts = [part.strip() for part in next(csv.reader([line], skipinitialspace=True), [])]
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
    """Kaggle's `results.csv`: pipe-separated as Kaggle has it (`image_name| comment_number| comment`, space padded),
    or comma-separated as most copies re-save it (`image_name,comment_number,comment`, captions holding commas
    in double quotes). The first line says which: a '|' in it, the pipes."""
    with path.open(encoding="utf-8-sig", errors="replace") as lines:
        first = next((line for line in lines if line.strip()), "")
    return _parse_lines(path, _results_row if "|" in first else _results_comma_row, LAYOUTS["results_csv"].header)


def read_captions_txt(path: Path) -> tuple[list[Row], list[int]]:
    """Kaggle's comma-separated `captions.txt` (`image,caption`); captions may hold commas and quotes."""
    return _parse_lines(path, _captions_txt_row, LAYOUTS["captions_txt"].header)


READERS: dict[str, Callable[[Path], tuple[list[Row], list[int]]]] = {
    "karpathy": read_karpathy_json,
    "coco_captions": read_coco_captions,
    "huggingface": read_huggingface_csv,
    "token": read_token_file,
    "results_csv": read_results_csv,
    "captions_txt": read_captions_txt,
}


def _karpathy_json_in(folder: Path) -> Path | None:
    """The Karpathy split file in `folder`, never the built-in dataset's generated one."""
    karpathy = LAYOUTS["karpathy"].match(_listing(folder)[1])
    return None if karpathy is None else folder / karpathy


def _split_beside(folder: Path) -> tuple[dict[str, str], str] | None:
    """The split that a folder gives the split-less annotation file in or under it, and where it comes from: a
    Karpathy JSON, else Flickr8k's official lists (`Flickr_8k.trainImages.txt`, `.devImages.txt`, `.testImages.txt`)."""
    karpathy = _karpathy_json_in(folder)
    if karpathy is not None:
        rows, _ = read_karpathy_json(karpathy)
        return {image: split for image, split, _ in rows}, karpathy.name
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


def _hashed_order(images: list[str]) -> list[str]:
    """`images` ordered by the SHA-256 of their names: the same on every machine, whatever the file order."""
    return sorted(images, key=lambda name: hashlib.sha256(name.encode("utf-8")).hexdigest())


def _coco_id(image: str) -> int | None:
    """The COCO image id that a file name ends in: COCO_val2014_000000391895.jpg and 000000391895.jpg give 391895."""
    match = re.search(r"(\d+)\.\w+$", image)
    return int(match.group(1)) if match else None


def _coco_split(rows: list[Row], path: Path, root: Path) -> list[Row]:
    """The split of COCO's official train and val: a Karpathy JSON's beside `path` or in `root` (matched by image
    id, so that it serves the 2014 and the 2017 images alike), else train stays train and val's images are split
    by the hash of their names into val and test of `COCO_HELD_OUT_IMAGES` each (half of val's when it has fewer
    than twice as many) and restval, the rest, as in Karpathy's split."""
    for folder in dict.fromkeys((path.parent, root)):
        karpathy = _karpathy_json_in(folder)
        if karpathy is not None:
            split_of_id = {
                image["cocoid"]: image["split"]
                for image in _karpathy_images(karpathy)
                if isinstance(image, dict) and "cocoid" in image and image.get("split") in (*SPLITS, "restval")
            }
            split_of = {image: split_of_id.get(_coco_id(image)) for image in dict.fromkeys(row[0] for row in rows)}
            unknown = [image for image, split in split_of.items() if split is None]
            log.info(f"Split: Karpathy's, from {karpathy}, matched to the images by their COCO id")
            if unknown:
                log.warning(
                    f"{len(unknown)} image(s) of {path.name} and the file beside it are not in {karpathy.name} (by "
                    f"COCO id); they are used for training (first: {', '.join(unknown[:3])})"
                )
            return [(image, split_of[image] or "train", caption) for image, _, caption in rows]
    val_images = _hashed_order(list(dict.fromkeys(image for image, split, _ in rows if split == "val")))
    held_out = min(COCO_HELD_OUT_IMAGES, len(val_images) // 2)
    split_of = dict.fromkeys(val_images[:held_out], "val") | dict.fromkeys(val_images[held_out : 2 * held_out], "test")
    restval = len(val_images) - 2 * held_out
    log.info(
        f"No Karpathy split (dataset_coco.json) beside {path.name} or in {root}: val{path.stem[-4:]}'s "
        f"{len(val_images):,} images split by the SHA-256 of their names into {held_out:,} val, {held_out:,} test "
        f"and {restval:,} restval (trained on unless data.restval=drop); train{path.stem[-4:]} is train"
    )
    return [
        (image, split_of.get(image, "restval") if split == "val" else split, caption) for image, split, caption in rows
    ]


def _resolve_restval(rows: list[Row], restval: str, source: str) -> list[Row]:
    """Karpathy's restval images as train images (`restval="train"`), or left out (`"drop"`), said in the log."""
    if restval == "train":
        return [(image, "train" if split == "restval" else split, caption) for image, split, caption in rows]
    kept = [row for row in rows if row[1] != "restval"]
    if len(kept) < len(rows):
        dropped = {image for image, split, _ in rows if split == "restval"}
        log.info(
            f"data.restval=drop: left out the {len(dropped):,} restval image(s) of {source} and their "
            f"{len(rows) - len(kept):,} caption(s)"
        )
    return kept


def deterministic_split(
    images: list[str], test_images: int = DEFAULT_TEST_IMAGES, val_images: int = DEFAULT_VAL_IMAGES
) -> dict[str, str]:
    """Split images by the hash of their name: the same on every machine, whatever the file order.

    Test and val take `test_images` and `val_images` images (at most a tenth of the data each, at least one).
    """
    ordered = _hashed_order(images)
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
