"""demo.py as users meet it: one server on 127.0.0.1 for the module, driven through Gradio's own client. Its caption
and figure are caption.py's (its `caption` function, on the same image with the same settings); a text file named
.jpg, an image of too many pixels and an upload over the size limit get a message, and the next caption still
works; files outside its examples and outputs are refused."""

import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.runs import PROJECT, compose_config

if importlib.util.find_spec("gradio") is None:  # the demo extra (pip install -e ".[demo]"); not imported here
    pytest.skip("demo.py needs Gradio: the demo extra is not installed", allow_module_level=True)
gradio_client = pytest.importorskip("gradio_client")

pytestmark = pytest.mark.slow  # starts demo.py on the tiny run's checkpoint

MAX_UPLOAD_MB = 0.05  # small limits, so that the files that break them stay small
MAX_IMAGE_PIXELS = 50_000
BEAM_SIZE, LENGTH_PENALTY = 2, 1.0  # not the defaults, so that the page must pass them on


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on `port`, from the kernel's own tables (Linux)."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                addresses.add(
                    socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]) if len(address) == 8 else address
                )
    return addresses


@pytest.fixture(scope="module")
def test_split(tiny_run) -> list[Path]:
    """The test images of the tiny run's data, read from its annotation file."""
    root = Path(tiny_run["output_dir"]).parent / "data" / "shapes_tiny"
    entries = json.loads((root / "dataset_shapes.json").read_text())["images"]
    return [root / "images" / entry["filename"] for entry in entries if entry["split"] == "test"]


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    """demo.py on the tiny run's best checkpoint, started as a user starts it; killed at the end."""
    folder = tmp_path_factory.mktemp("demo")
    port = free_port()
    environment = {**os.environ, "PYTHONWARNINGS": "ignore", "GRADIO_ANALYTICS_ENABLED": "False"}
    log_path = folder / "demo.out"
    command = [
        sys.executable,
        str(PROJECT / "demo.py"),
        f"ckpt={tiny_run['best_checkpoint']}",
        f"demo.port={port}",
        f"demo.max_upload_mb={MAX_UPLOAD_MB}",
        f"demo.max_image_pixels={MAX_IMAGE_PIXELS}",
        f"hydra.run.dir={folder / 'run'}",
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=environment)
    url = f"http://127.0.0.1:{port}/"
    quiet = pytest.MonkeyPatch()
    quiet.setenv("GRADIO_ANALYTICS_ENABLED", "False")  # the client, too, would send telemetry otherwise
    quiet.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        assert process.poll() is None, log_path.read_text()[-3000:]
        client = gradio_client.Client(url, verbose=False, download_files=str(folder / "downloads"))
        yield {"url": url, "port": port, "client": client, "log": log_path, "folder": folder}
    finally:
        quiet.undo()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def caption_on_page(server, image: Path) -> tuple[str, Path]:
    caption, figure = server["client"].predict(
        gradio_client.handle_file(str(image)), BEAM_SIZE, LENGTH_PENALTY, api_name="/caption"
    )
    return caption, Path(figure)


def test_it_listens_on_127_0_0_1_only_and_offers_the_test_images_it_was_not_trained_on(server, test_split):
    assert listening_addresses(server["port"]) == {"127.0.0.1"}
    config = server["client"].config
    offered = [
        sample[0]["orig_name"]
        for component in config["components"]
        if component["type"] == "dataset"
        for sample in component["props"]["samples"]
    ]
    assert offered == [path.name for path in test_split]


def test_its_caption_and_figure_are_caption_py_s_for_the_same_image_and_settings(
    server, test_split, tiny_run, tmp_path
):
    from caption import caption

    image = test_split[0]
    on_page, figure = caption_on_page(server, image)
    # caption.py's own function, in this process (its command line is tests/inference/test_caption_py.py's)
    overrides = [f"ckpt={tiny_run['best_checkpoint']}", f"image={image}", f"paths.output_dir={tmp_path}"]
    settings = [f"beam_size={BEAM_SIZE}", f"length_penalty={LENGTH_PENALTY}", f"paths.root_dir={tmp_path}"]
    [expected] = caption(compose_config("caption", overrides + settings))
    assert on_page == expected["caption"]
    expected_figure = np.asarray(Image.open(expected["figure"]))
    assert np.array_equal(np.asarray(Image.open(figure)), expected_figure)  # the same panels, pixel for pixel


def test_bad_uploads_and_settings_get_a_message_and_the_next_caption_still_works(server, test_split, tmp_path):
    first, _ = caption_on_page(server, test_split[1])
    not_an_image = tmp_path / "photo.jpg"
    not_an_image.write_text("a text file, named as a photo")
    with pytest.raises(gradio_client.exceptions.AppError, match="not an image that can be read"):
        caption_on_page(server, not_an_image)
    too_many_pixels = tmp_path / "large.png"
    Image.new("RGB", (300, 300), "white").save(too_many_pixels)  # 90,000 pixels, a small file
    with pytest.raises(gradio_client.exceptions.AppError, match=r"300 x 300 = 90,000 pixels, over .* 50,000"):
        caption_on_page(server, too_many_pixels)
    with pytest.raises(gradio_client.exceptions.AppError, match="beam size must be a whole number from 1 to 10"):
        server["client"].predict(gradio_client.handle_file(str(test_split[1])), 1000, 0.5, api_name="/caption")
    # Over the size limit, whoever sends it: Gradio's upload route refuses it before the page sees it.
    import httpx

    too_large = {"files": ("large.png", b"\x89PNG" + bytes(int(MAX_UPLOAD_MB * 2**20) + 1))}
    response = httpx.post(server["url"] + "gradio_api/upload", files=too_large)
    assert response.status_code == 413 and "maximum allowed size" in response.text
    again, _ = caption_on_page(server, test_split[1])
    assert again == first
    log = server["log"].read_text()
    assert "Refused photo.jpg: The file is not an image" in log and "Traceback" not in log


def test_files_outside_its_examples_and_outputs_are_refused(server, tiny_run):
    import httpx

    def status(path: str) -> int:
        return httpx.get(server["url"] + "gradio_api/file=" + path).status_code

    uploaded = server["folder"] / "uploaded.png"
    Image.new("RGB", (8, 8)).save(uploaded)
    [served] = httpx.post(server["url"] + "gradio_api/upload", files={"files": uploaded.open("rb")}).json()
    assert status(served) == 200  # its own files are served...
    run = server["folder"] / "run"
    for outside in (tiny_run["best_checkpoint"], "/etc/passwd", str(run / ".hydra" / "config.yaml")):
        assert status(outside) == 403, outside  # ... nothing else
    assert status(str(run / "gradio" / ".." / ".hydra" / "config.yaml")) == 403


def test_a_host_other_than_loopback_is_warned_about(caplog):
    from captioning.inference.demo_settings import warn_if_exposed

    with caplog.at_level(logging.WARNING):
        warn_if_exposed("127.0.0.1")
        assert caplog.records == []
        warn_if_exposed("0.0.0.0")
    assert "served to every machine that can reach this one" in caplog.text


def test_settings_that_cannot_work_are_named_with_a_valid_example():
    from captioning.errors import ConfigError
    from captioning.inference.demo_settings import DemoSettings

    with pytest.raises(ConfigError) as error:
        DemoSettings(port=0, max_upload_mb=-1, max_image_pixels="many")
    message = str(error.value)
    assert "demo.port=0 cannot work" in message and "e.g. demo.port=7860" in message
    assert "demo.max_upload_mb=-1" in message and "demo.max_image_pixels=many" in message
    DemoSettings(host="0.0.0.0", port=8080)  # values that work are taken


def test_a_port_that_is_taken_is_named_before_the_model_loads():
    from captioning.errors import ConfigError
    from captioning.inference.demo_settings import check_can_listen

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"Cannot serve on 127.0.0.1:{port}: the port is taken"):
            check_can_listen("127.0.0.1", port)
    check_can_listen("127.0.0.1", free_port())  # a free one is taken
