"""Built-in dataset that needs no download: coloured shapes at known places, captioned five ways.

The images, captions and object boxes are generated deterministically from a seed and stored in the
Karpathy layout (`dataset_shapes.json` + `images/`), so they go through the same reader as Flickr30k.
Each image entry also carries `objects`: shape, colour, size and box [x0, y0, x1, y1] in pixels.

Every file is written under a temporary name of its writer's own, then renamed into place: ranks that a
launcher (srun, torchrun) starts together may generate the same dataset at once, and a file is then always
either absent or complete, whoever reads it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from captioning.errors import DatasetFormatError
from captioning.folders import WRITE_PROBE_PREFIX, writable_folder

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
ANNOTATION_FILE = "dataset_shapes.json"
SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
}
SIZES = {"small": 0.09, "large": 0.15}  # half-width as a share of the image side
GRID = 3  # objects sit in distinct cells of a 3x3 grid
POSITION_NAMES = {
    (0, 0): "top left",
    (1, 0): "top",
    (2, 0): "top right",
    (0, 1): "left",
    (1, 1): "middle",
    (2, 1): "right",
    (0, 2): "bottom left",
    (1, 2): "bottom",
    (2, 2): "bottom right",
}


def _relation(first: dict, second: dict) -> str:
    """Where `first` lies relative to `second`, along the axis where they are furthest apart."""
    dx = first["center"][0] - second["center"][0]
    dy = first["center"][1] - second["center"][1]
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def _long(obj: dict) -> str:
    return f"{obj['size']} {obj['colour']} {obj['shape']}"


def _short(obj: dict) -> str:
    return f"{obj['colour']} {obj['shape']}"


def describe(objects: list[dict]) -> list[str]:
    """Five different captions naming the objects and their spatial relations."""
    if len(objects) == 1:
        (a,) = objects
        where = POSITION_NAMES[a["cell"]]
        return [
            f"a {_long(a)}",
            f"a {_short(a)} in the {where}",
            f"a {_long(a)} in the {where}",
            f"there is a {_short(a)}",
            f"one {_long(a)} on a white background",
        ]
    if len(objects) == 2:
        a, b = objects
        return [
            f"a {_long(a)} {_relation(a, b)} a {_long(b)}",
            f"a {_long(b)} {_relation(b, a)} a {_long(a)}",
            f"a {_short(a)} {_relation(a, b)} a {_short(b)}",
            f"a {_short(a)} and a {_short(b)}",
            f"two shapes : a {_long(a)} and a {_long(b)}",
        ]
    a, b, c = objects
    return [
        f"a {_short(a)} , a {_short(b)} and a {_short(c)}",
        f"a {_long(a)} {_relation(a, b)} a {_long(b)}",
        f"a {_short(b)} {_relation(b, c)} a {_short(c)}",
        f"a {_short(c)} {_relation(c, a)} a {_short(a)}",
        f"three shapes : a {_long(a)} , a {_long(b)} and a {_long(c)}",
    ]


def _random_objects(rng: random.Random, image_size: int) -> list[dict]:
    cell_size = image_size / GRID
    cells = rng.sample(sorted(POSITION_NAMES), rng.randint(1, 3))
    objects = []
    for cell in cells:
        size = rng.choice(sorted(SIZES))
        half = SIZES[size] * image_size
        slack = cell_size / 2 - half
        cx = (cell[0] + 0.5) * cell_size + rng.uniform(-slack, slack)
        cy = (cell[1] + 0.5) * cell_size + rng.uniform(-slack, slack)
        box = [round(cx - half), round(cy - half), round(cx + half), round(cy + half)]
        objects.append(
            {
                "shape": rng.choice(SHAPES),
                "colour": rng.choice(sorted(COLOURS)),
                "size": size,
                "cell": cell,
                "center": (cx, cy),
                "box": box,
            }
        )
    objects.sort(key=lambda obj: obj["center"][0])  # captions mention objects from left to right
    return objects


def _draw(objects: list[dict], image_size: int) -> Image.Image:
    image = Image.new("RGB", (image_size, image_size), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    for obj in objects:
        x0, y0, x1, y1 = obj["box"]
        colour = COLOURS[obj["colour"]]
        if obj["shape"] == "circle":
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif obj["shape"] == "square":
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)
    return image


@contextmanager
def _written_atomically(path: Path) -> Iterator[Path]:
    """The temporary path to write `path` through, renamed to `path` once the block completes. The name is this
    process's own (host and pid), and hidden, so no `dataset_*.json` reader picks it up; removed on error."""
    partial = path.with_name(f".{path.name}.partial-{socket.gethostname()}-{os.getpid()}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _foreign_entries(root: Path) -> list[str]:
    """What `root` holds besides a shapes dataset (complete or partly written): the generator writes only into
    an empty folder or over itself, never among a user's files."""
    if not root.exists():
        return []
    if not root.is_dir():
        return [root.name]
    foreign = []
    for entry in sorted(root.iterdir()):
        if entry.name == ANNOTATION_FILE:
            try:
                generated = "generator" in json.loads(entry.read_text())
            except (OSError, ValueError):
                generated = False
            if not generated:
                foreign.append(entry.name)
        elif entry.name == "images" and entry.is_dir():
            foreign += [
                f"images/{image.name}"
                for image in sorted(entry.iterdir())
                if not (re.fullmatch(r"shapes_\d{5}\.png", image.name) or image.name.startswith("."))
            ]
        elif not entry.name.startswith((f".{ANNOTATION_FILE}.partial-", WRITE_PROBE_PREFIX)):
            # the generator's own: another rank's annotations being written, or its check that it can write
            foreign.append(entry.name + ("/" if entry.is_dir() else ""))
    return foreign


def generate_shapes_dataset(
    root: str | Path,
    num_images: int = 1500,
    val_images: int = 150,
    test_images: int = 150,
    seed: int = 0,
    image_size: int = 224,
) -> Path:
    """Write the dataset into `root` unless the same one is already there; returns the annotation file. A `root`
    that holds anything else is refused (DatasetFormatError), and nothing is written."""
    root = Path(root)
    annotation_path = root / ANNOTATION_FILE
    settings = {
        "version": GENERATOR_VERSION,
        "num_images": num_images,
        "val_images": val_images,
        "test_images": test_images,
        "seed": seed,
        "image_size": image_size,
    }
    foreign = _foreign_entries(root)
    if foreign:
        shown = ", ".join(foreign[:6]) + (f" and {len(foreign) - 6} more" if len(foreign) > 6 else "")
        raise DatasetFormatError(
            f"The built-in shapes dataset is not generated into {root}: it holds other files ({shown}), and the "
            "project never writes among a user's data. Leave data.root out (data/shapes) or name an empty folder. "
            "A checkpoint trained on the built-in data is evaluated on it alone: leave data.root out of evaluate.py."
        )
    if annotation_path.is_file():
        if json.loads(annotation_path.read_text()).get("generator") == settings:
            return annotation_path
        log.info(f"Regenerating {root}: its settings differ from {settings}")
    if num_images < val_images + test_images + 1:
        raise ValueError(f"num_images={num_images} leaves no training image after the val and test splits")
    (writable_folder(root, "paths.data_dir") / "images").mkdir(exist_ok=True)
    rng = random.Random(seed)
    entries = []
    for index in tqdm(range(num_images), desc=f"Generating the shapes dataset in {root}", unit="image"):
        objects = _random_objects(rng, image_size)
        filename = f"shapes_{index:05d}.png"
        with _written_atomically(root / "images" / filename) as partial:
            _draw(objects, image_size).save(partial, format="PNG")
        split = "test" if index < test_images else "val" if index < test_images + val_images else "train"
        entries.append(
            {
                "filename": filename,
                "imgid": index,
                "split": split,
                "sentences": [{"raw": caption, "tokens": caption.split()} for caption in describe(objects)],
                "objects": [{key: obj[key] for key in ("shape", "colour", "size", "box")} for obj in objects],
            }
        )
    with _written_atomically(annotation_path) as partial:  # written last: its presence means the dataset is complete
        partial.write_text(json.dumps({"dataset": "shapes", "generator": settings, "images": entries}))
    return annotation_path


def load_object_boxes(root: str | Path) -> tuple[dict[str, list[dict]], int] | None:
    """The objects of every image of a shapes dataset, keyed by file name, and the image size; None if
    `root` holds no shapes dataset."""
    annotation_path = Path(root) / ANNOTATION_FILE
    if not annotation_path.is_file():
        return None
    dataset = json.loads(annotation_path.read_text())
    objects = {entry["filename"]: entry["objects"] for entry in dataset["images"]}
    return objects, dataset["generator"]["image_size"]
