"""A web page that captions images: python demo.py ckpt=outputs/<run>/checkpoints/best.ckpt (conf/demo.yaml)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from captioning.cli import check_command_line, register_resolvers, run_entry_point
from captioning.config_checks import check_config
from captioning.errors import CaptioningError
from captioning.inference.captioner import Captioner
from captioning.inference.demo_settings import DemoSettings, check_can_listen
from captioning.inference.examples import example_images

log = logging.getLogger("demo")


def demo(cfg: DictConfig) -> None:
    """Serve the page for `cfg.ckpt` until Ctrl-C; Gradio's uploads and outputs go into the run folder."""
    check_config(cfg)
    settings = DemoSettings(**OmegaConf.to_container(cfg.demo, resolve=True))
    check_can_listen(settings.host, settings.port)
    # Read by Gradio when it is imported: its files in this run's folder, and no analytics sent anywhere.
    gradio_dir = Path(cfg.paths.output_dir) / "gradio"
    os.environ["GRADIO_TEMP_DIR"] = str(gradio_dir)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(gradio_dir / "cached_examples")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line for each of Gradio's own start-up requests
    try:
        from captioning.inference.demo_page import build_page, serve
    except ImportError as error:
        raise CaptioningError(f"demo.py needs Gradio ({error}): pip install -e '.[demo]'") from error

    checkpoint_path = Path(to_absolute_path(cfg.ckpt))
    captioner = Captioner(checkpoint_path)
    folder = Path(to_absolute_path(settings.examples)) if settings.examples else None
    examples = example_images(captioner.checkpoint, folder, settings.num_examples)
    offered = "images of demo.examples" if settings.examples else "test images, which it was not trained on"
    title = f"Checkpoint `{checkpoint_path.name}` of `{checkpoint_path.parent.parent.name}`" + (
        f"; the examples are {len(examples)} {offered}." if examples else "."
    )
    page = build_page(
        captioner, examples, cfg.beam_size, cfg.length_penalty, cfg.allow_unk, cfg.block_trigrams, settings, title
    )
    serve(page, settings)


@hydra.main(version_base="1.3", config_path="conf", config_name="demo")
def main(cfg: DictConfig) -> None:
    run_entry_point(demo, cfg, "demo")


if __name__ == "__main__":
    register_resolvers()
    check_command_line(Path(__file__).parent / "conf", "demo", sys.argv[1:])  # a mistyped key, before any folder
    main()
