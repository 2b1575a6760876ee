"""The README's screenshot of demo.py: start the demo, pick a test image in headless Chromium, caption it, and save
the page (docs/demo.png). Not part of the tests, nor a dependency of the project: it needs Playwright's Python
package in a venv of its own and a Chromium of the system (Playwright never downloads a browser here):

    apt-get install -y chromium
    python3 -m venv /tmp/shotvenv && /tmp/shotvenv/bin/pip install playwright pillow
    /tmp/shotvenv/bin/python tools/screenshot_demo.py --ckpt outputs/quickstart/<run>/checkpoints/best.ckpt

It starts `demo.py` with the project's own Python (.venv/bin/python unless --python says otherwise) on a free port
of 127.0.0.1, and stops it at the end."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

PROJECT = Path(__file__).resolve().parents[1]
# Headless, offline and quiet: no GPU, no QUIC, no sync, updates or background requests (Playwright's launch
# gives the browser a fresh profile of its own each time).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"demo.py ended with status {process.returncode} before it served the page")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"demo.py did not serve the page within {timeout:.0f} s")


def screenshot(url: str, chromium: str, output: Path, example: int, width: int) -> str:
    """Open `url`, click test image number `example`, then Caption; save the page at `width` pixels; return the
    caption shown."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(url, wait_until="networkidle")
        page.locator(".gallery-item").nth(example).click()  # one of the test images under "Test images"
        page.get_by_role("button", name="Caption", exact=True).click()
        caption = page.get_by_label("Caption")
        page.wait_for_function("element => element.value.length > 0", arg=caption.element_handle(), timeout=120_000)
        figure = page.locator(".attention-figure img")  # the attention figure, once it has loaded
        figure.wait_for(state="visible")
        page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=figure.element_handle())
        page.screenshot(path=str(output), full_page=True)
        text = caption.input_value()
        browser.close()
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="the checkpoint demo.py serves")
    parser.add_argument("--output", type=Path, default=PROJECT / "docs" / "demo.png")
    parser.add_argument("--python", default=str(PROJECT / ".venv" / "bin" / "python"), help="the project's Python")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--example", type=int, default=0, help="which test image of the page to caption")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--colors", type=int, default=256, help="the PNG's palette, to keep the file small")
    arguments = parser.parse_args()

    port = free_port()
    with tempfile.TemporaryDirectory() as run_dir:
        environment = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONWARNINGS": "ignore"}
        command = [
            arguments.python,
            str(PROJECT / "demo.py"),
            f"ckpt={Path(arguments.ckpt).resolve()}",
            f"demo.port={port}",
            f"hydra.run.dir={run_dir}",
        ]
        demo = subprocess.Popen(command, cwd=PROJECT, env=environment)
        try:
            wait_for_port(port, demo)
            arguments.output.parent.mkdir(parents=True, exist_ok=True)
            caption = screenshot(
                f"http://127.0.0.1:{port}/", arguments.chromium, arguments.output, arguments.example, arguments.width
            )
        finally:
            demo.terminate()
            demo.wait(timeout=30)
    # A palette of 256 colours: the page is flat colours, and the figure's maps survive it.
    Image.open(arguments.output).convert("RGB").quantize(arguments.colors, dither=Image.Dither.NONE).save(
        arguments.output, optimize=True
    )
    width, height = Image.open(arguments.output).size
    kilobytes = arguments.output.stat().st_size / 1024
    print(f"{arguments.output}: {width} x {height}, {kilobytes:.0f} KB; caption: {caption}")


if __name__ == "__main__":
    main()
