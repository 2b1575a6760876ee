"""Where the demo's page listens and what it accepts (the `demo` group of conf/demo.yaml), checked before Gradio
is imported and the model loaded; and the warning for a page served beyond this machine."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

from captioning.errors import ConfigError

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _whole(value: object, low: int, high: float = float("inf")) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


# (key, whether a value works, what a valid one is, a valid example)
_RULES = [
    ("host", lambda value: isinstance(value, str) and value != "", "an address of this machine", "127.0.0.1"),
    ("port", lambda value: _whole(value, 1, 65535), "a port from 1 to 65535", "7860"),
    ("max_upload_mb", lambda value: isinstance(value, (int, float)) and value > 0, "a size above 0", "10"),
    ("max_image_pixels", lambda value: _whole(value, 1), "a number of pixels, 1 or more", "50000000"),
    ("max_beam_size", lambda value: _whole(value, 1), "a beam of 1 or more", "10"),
    ("num_examples", lambda value: _whole(value, 0), "a number of images, 0 or more", "8"),
]


@dataclass
class DemoSettings:
    """Where the page listens and what it accepts: the `demo` config group of conf/demo.yaml."""

    host: str = "127.0.0.1"
    port: int = 7860
    max_upload_mb: float = 10.0  # as Gradio counts it: 1 MB = 2**20 bytes
    max_image_pixels: int = 50_000_000  # width x height; a decompression bomb is a small file with too many
    max_beam_size: int = 10
    examples: str | None = None  # a folder of images to offer; None: the test images the checkpoint was trained for
    num_examples: int = 8

    def __post_init__(self) -> None:
        problems = [
            f"demo.{key}={getattr(self, key)} cannot work: it must be {valid}, e.g. demo.{key}={example}."
            for key, works, valid, example in _RULES
            if not works(getattr(self, key))
        ]
        if problems:
            raise ConfigError(" ".join(problems))

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


def warn_if_exposed(host: str) -> None:
    """A host other than this machine's loopback serves the page, without a password, to whoever reaches it."""
    if host not in LOCAL_HOSTS:
        log.warning(
            f"demo.host={host}: the page is served to every machine that can reach this one at that address, "
            "without a password, and anyone there can caption images on it. Leave demo.host out (127.0.0.1) to "
            "keep it to this machine."
        )


def cannot_listen(host: str, port: int) -> ConfigError:
    """The error of a page that cannot listen on `host`:`port`."""
    return ConfigError(
        f"Cannot serve on {host}:{port}: the port is taken, or {host} is not an address of this machine. "
        f"Pass another, e.g. demo.port={port + 1 if port < 65535 else 7860}."
    )


def check_can_listen(host: str, port: int) -> None:
    """Raise `cannot_listen` now, before the model loads, if nothing could listen on `host`:`port`."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself (uvicorn) binds
            probe.bind((host, port))
    except OSError as error:
        raise cannot_listen(host, port) from error
