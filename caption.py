"""Caption any image: python caption.py ckpt=outputs/<run>/checkpoints/best.ckpt image=photo.jpg|folder."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from captioning.cli import check_command_line, register_resolvers, run_entry_point
from captioning.config_checks import check_config
from captioning.inference.captioner import caption_images, find_images

log = logging.getLogger("caption")


def caption(cfg: DictConfig) -> list[dict]:
    """Caption `cfg.image` (a file or a folder) with `cfg.ckpt`; no readable image is an error (exit status 1)."""
    check_config(cfg)
    images = find_images(Path(to_absolute_path(cfg.image)))
    results = caption_images(
        to_absolute_path(cfg.ckpt),
        images,
        cfg.beam_size,
        Path(cfg.paths.output_dir),
        cfg.length_penalty,
        cfg.allow_unk,
        cfg.block_trigrams,
    )
    log.info(f"Attention figures in {Path(cfg.paths.output_dir) / 'attention'}")
    return results


@hydra.main(version_base="1.3", config_path="conf", config_name="caption")
def main(cfg: DictConfig) -> None:
    run_entry_point(caption, cfg, "caption")


if __name__ == "__main__":
    register_resolvers()
    check_command_line(Path(__file__).parent / "conf", "caption", sys.argv[1:])  # a mistyped key, before any folder
    main()
