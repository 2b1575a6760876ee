"""Caption images of the user's own: any size and mode, one caption and one attention figure each."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from captioning.data.images import IMAGE_SUFFIXES, ImageFolderDataset, image_transform, load_image
from captioning.errors import DatasetFormatError, DatasetNotFoundError
from captioning.model.checkpoint import load_captioner, read_checkpoint
from captioning.visual.attention import save_attention_figure
from captioning.vocabulary import detokenize

log = logging.getLogger(__name__)


def find_images(path: Path) -> list[Path]:
    """`path` itself, or the images of the folder `path` (sorted). Its subfolders are not searched: a folder
    whose images are all in subfolders is refused with the subfolders that hold images."""
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            suffixes = ", ".join(IMAGE_SUFFIXES)
            nested = sorted({p.parent for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()})
            if nested:
                shown = ", ".join(f"{folder.relative_to(path)}/" for folder in nested[:5])
                raise DatasetNotFoundError(
                    f"No image ({suffixes}) in folder {path} itself, and its subfolders are not searched: "
                    f"{len(nested)} of them hold images ({shown}{', ...' if len(nested) > 5 else ''}). "
                    f"Pass one of them, e.g. image={nested[0]}."
                )
            raise DatasetNotFoundError(f"No image ({suffixes}) in folder {path}, nor in its subfolders.")
        return images
    if not path.is_file():
        raise DatasetNotFoundError(f"Image {path} does not exist: pass image=<file or folder>.")
    return [path]


@torch.no_grad()
def caption_images(
    checkpoint_path: str | Path,
    images: list[Path],
    beam_size: int,
    output_dir: Path,
    length_penalty: float = 0.0,
    allow_unk: bool = False,
    block_trigrams: bool = False,
) -> list[dict]:
    """Caption each image with beam search (log-probability / length ** `length_penalty`; `<unk>` only if
    `allow_unk`, no repeated trigram with `block_trigrams`); write its attention figure; return image,
    caption, figure. Warns of an empty caption."""
    checkpoint = read_checkpoint(checkpoint_path)
    module = load_captioner(checkpoint)
    dataset = ImageFolderDataset(images, image_transform(module.encoder.image_size))  # as trained
    results = []
    for index, path in enumerate(images):
        pixels, readable = dataset[index]  # (3, S, S)
        if not readable:
            log.warning(f"Skipped {path}: not a readable image")
            continue
        features = module.encoder(pixels.unsqueeze(0))  # (1, R, D)
        [(words, attention)] = module.caption(features, beam_size, length_penalty, allow_unk, block_trigrams)
        if not words:
            log.warning(f"{path}: the caption is empty (<eos> came first); try a larger length_penalty")
        figure = save_attention_figure(
            load_image(path), words, attention, output_dir / "attention" / f"{path.name}.png"
        )
        caption = detokenize(words)
        results.append({"image": str(path), "caption": caption, "figure": str(figure)})
        print(f"{path}: {caption}")
    if not results:
        raise DatasetFormatError(
            f"None of the {len(images)} image(s) given is readable (first: {images[0]}): nothing was captioned. "
            f"Pass image= a file or folder of images that open (formats: {', '.join(IMAGE_SUFFIXES)})."
        )
    return results
