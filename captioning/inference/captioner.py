"""Caption images of the user's own: any size and mode, one caption and one attention figure each."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from captioning.data.images import IMAGE_SUFFIXES, UNREADABLE_IMAGE_ERRORS, image_transform, load_image
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


@dataclass
class Caption:
    """One image's caption: its words, their readable text, and where the decoder looked for each word."""

    words: list[str]
    text: str
    attention: torch.Tensor  # (words, R)


class Captioner:
    """The model of a checkpoint, loaded once (on the CPU), that captions one image at a time: what caption.py
    and demo.py share."""

    def __init__(self, checkpoint_path: str | Path) -> None:
        self.checkpoint = read_checkpoint(checkpoint_path)
        self.module = load_captioner(self.checkpoint)
        self.transform = image_transform(self.module.encoder.image_size)  # as trained

    @torch.no_grad()
    def caption(
        self,
        image: Image.Image,
        beam_size: int,
        length_penalty: float = 0.0,
        allow_unk: bool = False,
        block_trigrams: bool = False,
    ) -> Caption:
        """Caption `image` (as `load_image` opens it) with beam search: log-probability / length **
        `length_penalty`; `<unk>` only if `allow_unk`; no repeated trigram with `block_trigrams`."""
        pixels = self.transform(image)  # (3, S, S)
        features = self.module.encoder(pixels.unsqueeze(0))  # (1, R, D)
        [(words, attention)] = self.module.caption(features, beam_size, length_penalty, allow_unk, block_trigrams)
        return Caption(words, detokenize(words), attention)


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
    captioner = Captioner(checkpoint_path)
    results = []
    for path in images:
        try:
            image = load_image(path)
        except UNREADABLE_IMAGE_ERRORS:
            log.warning(f"Skipped {path}: not a readable image")
            continue
        caption = captioner.caption(image, beam_size, length_penalty, allow_unk, block_trigrams)
        if not caption.words:
            log.warning(f"{path}: the caption is empty (<eos> came first); try a larger length_penalty")
        figure = save_attention_figure(
            image, caption.words, caption.attention, output_dir / "attention" / f"{path.name}.png"
        )
        results.append({"image": str(path), "caption": caption.text, "figure": str(figure)})
        print(f"{path}: {caption.text}")
    if not results:
        raise DatasetFormatError(
            f"None of the {len(images)} image(s) given is readable (first: {images[0]}): nothing was captioned. "
            f"Pass image= a file or folder of images that open (formats: {', '.join(IMAGE_SUFFIXES)})."
        )
    return results
