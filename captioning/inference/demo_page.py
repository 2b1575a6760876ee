"""The demo's web page (Gradio): drop in an image or pick a test image, get its caption and each word's attention.

Safe by default, as a server should be: it listens on 127.0.0.1 unless told otherwise, never opens a public
share link, refuses uploads over a stated size or pixel count and files that are not images with a message
(the worker lives on), and serves only its examples and its own outputs (Gradio's cache folder)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import gradio as gr
import matplotlib.pyplot as plt
from PIL import Image

from captioning.data.images import IMAGE_SUFFIXES, UNREADABLE_IMAGE_ERRORS, load_image
from captioning.errors import ConfigError
from captioning.inference.captioner import Caption, Captioner
from captioning.inference.demo_settings import DemoSettings, cannot_listen, warn_if_exposed
from captioning.visual.attention import attention_figure

log = logging.getLogger(__name__)

MAX_LENGTH_PENALTY = 2.0  # the slider's range: 0 (plain log-probability) to 2 (long captions strongly favoured)


def refused(message: str) -> gr.Error:
    """A message for the user in the page (the client's AppError), logged as one line, not a traceback. The page
    renders it as HTML: it names no file, nothing that a user sent."""
    return gr.Error(message, print_exception=False)


def open_upload(path: Path, max_bytes: int, max_pixels: int) -> Image.Image:
    """The uploaded image at `path` as `load_image` opens it; a file too large, not an image, broken, or of more
    than `max_pixels` pixels raises `refused` with a message for the user. The pixels are counted from the
    header, before anything is decoded."""
    size = path.stat().st_size
    if size > max_bytes:
        raise refused(f"The file is {size / 2**20:.1f} MB, over this page's limit of {max_bytes / 2**20:g} MB.")
    not_an_image = f"The file is not an image that can be read (formats: {', '.join(IMAGE_SUFFIXES)})."
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:  # over twice PIL's own limit (Image.MAX_IMAGE_PIXELS)
        raise refused(f"The image has too many pixels: this page takes at most {max_pixels:,}.") from None
    except UNREADABLE_IMAGE_ERRORS:
        raise refused(not_an_image) from None
    if width * height > max_pixels:
        raise refused(
            f"The image is {width} x {height} = {width * height:,} pixels, over this page's limit of "
            f"{max_pixels:,}: make it smaller first."
        )
    try:
        return load_image(path)
    except UNREADABLE_IMAGE_ERRORS:  # a header that opens, then truncated or broken data
        raise refused(f"The image is broken or truncated. {not_an_image}") from None


def figure_image(image: Image.Image, caption: Caption) -> Image.Image:
    """caption.py's attention figure (the image, then each word's attention over it) as an in-memory PNG."""
    figure = attention_figure(image, caption.words, caption.attention)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)  # the dpi of save_attention_figure: the same pixels
    plt.close(figure)
    return Image.open(buffer)


def build_page(
    captioner: Captioner,
    examples: list[Path],
    beam_size: int,
    length_penalty: float,
    allow_unk: bool,
    block_trigrams: bool,
    settings: DemoSettings,
    title: str,
) -> gr.Blocks:
    """The page: an image input, its test images as examples, beam size and length penalty sliders starting at
    `beam_size` and `length_penalty`, and a Caption button (API name `caption`) that shows the caption and the
    attention figure."""
    if not 1 <= beam_size <= settings.max_beam_size:
        raise ConfigError(f"beam_size={beam_size} lies outside the page's slider: 1 to demo.max_beam_size.")
    if not 0 <= length_penalty <= MAX_LENGTH_PENALTY:
        raise ConfigError(
            f"length_penalty={length_penalty} lies outside the page's slider: 0 to {MAX_LENGTH_PENALTY:g}."
        )

    def caption_upload(upload: dict | None, beam: float, penalty: float) -> tuple[str, Image.Image]:
        # The raw upload (Gradio's preprocessing is off, so that this function, not Gradio, opens the file and
        # says what is wrong with it); Gradio has already checked that the file is one uploaded to its cache.
        if not upload or not upload.get("path"):
            raise refused("Drop in an image first, or pick one of the test images.")
        # The sliders' values as sent: a client may send anything (the range first, so that int() never sees inf).
        if not isinstance(beam, (int, float)) or not 1 <= beam <= settings.max_beam_size or beam != int(beam):
            raise refused(f"The beam size must be a whole number from 1 to {settings.max_beam_size}.")
        if not isinstance(penalty, (int, float)) or not 0 <= penalty <= MAX_LENGTH_PENALTY:
            raise refused(f"The length penalty must lie from 0 to {MAX_LENGTH_PENALTY:g}.")
        name = upload.get("orig_name") or Path(upload["path"]).name
        try:
            image = open_upload(Path(upload["path"]), settings.max_upload_bytes, settings.max_image_pixels)
        except gr.Error as error:
            log.warning(f"Refused {name}: {error.message}")
            raise
        caption = captioner.caption(image, int(beam), float(penalty), allow_unk, block_trigrams)
        log.info(f"{name} (beam {int(beam)}, length penalty {penalty:g}): {caption.text}")
        if not caption.words:
            gr.Warning("The caption is empty (the model ended it at once): try a larger length penalty.")
        return caption.text, figure_image(image, caption)

    with gr.Blocks(title="Show, Attend and Tell", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown(f"## Show, Attend and Tell\n{title}")
        with gr.Row():
            with gr.Column(scale=2):
                upload = gr.Image(
                    type="filepath",
                    image_mode=None,  # the file as uploaded: load_image reads it as caption.py does
                    sources=["upload", "clipboard"],
                    label=f"Image (at most {settings.max_upload_mb:g} MB)",
                    height=300,
                )
                beam = gr.Slider(1, settings.max_beam_size, beam_size, step=1, label="Beam size")
                penalty = gr.Slider(
                    0,
                    MAX_LENGTH_PENALTY,
                    length_penalty,
                    step=0.1,
                    label="Length penalty",
                    info="beam search ranks captions by log-probability / length ** this",
                )
                button = gr.Button("Caption", variant="primary")
                if examples:
                    gr.Examples([[str(path)] for path in examples], inputs=[upload], label="Test images")
            with gr.Column(scale=3):
                text = gr.Textbox(label="Caption", interactive=False)
                figure = gr.Image(
                    label="Where each word looked",
                    show_label=False,  # the label would cover the figure's first title
                    type="pil",
                    format="png",
                    interactive=False,
                    buttons=["download", "fullscreen"],
                    elem_classes=["attention-figure"],
                )
        button.click(
            caption_upload,
            [upload, beam, penalty],
            [text, figure],
            api_name="caption",
            preprocess=False,
            concurrency_limit=1,  # one caption at a time: the model and matplotlib are shared
        )
    return page


def serve(page: gr.Blocks, settings: DemoSettings) -> None:
    """Serve `page` until Ctrl-C: on `settings.host` and `settings.port`, never with a public share link, with
    Gradio's upload limit, no monitoring page, no MCP server and nothing saved in the browser."""
    warn_if_exposed(settings.host)
    page.queue(max_size=32)  # requests beyond it are told that the queue is full
    try:
        page.launch(
            server_name=settings.host,
            server_port=settings.port,
            share=False,
            max_file_size=settings.max_upload_bytes,
            allowed_paths=[],  # the examples are copied into Gradio's cache when the page is built
            quiet=True,
            prevent_thread_lock=True,
            show_error=False,  # only the messages raised for users (gr.Error), never an exception's text
            ssr_mode=False,
            pwa=False,
            mcp_server=False,
            enable_monitoring=False,
            run_history=False,
            footer_links=["api", "settings"],
            css=".attention-figure img { padding-top: 2rem; }",  # room for the buttons above the figure's titles
        )
    except OSError as error:  # taken since check_can_listen looked
        raise cannot_listen(settings.host, settings.port) from error
    log.info(f"Serving on {page.local_url} (Ctrl-C stops it)")
    page.block_thread()
