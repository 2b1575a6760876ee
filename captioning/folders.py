"""Folders that a run writes into: made, and tried, before any work that would fill them."""

from __future__ import annotations

import os
from pathlib import Path

from captioning.errors import ConfigError

WRITE_PROBE_PREFIX = ".write-test-"  # the empty file that writable_folder creates and removes at once


def writable_folder(folder: str | Path, key: str) -> Path:
    """`folder`, made if needed, once a file could be created in it; else a ConfigError naming the folder, the
    reason (a read-only file system, no permission) and the configuration `key` that moves it."""
    folder = Path(folder)
    probe = folder / f"{WRITE_PROBE_PREFIX}{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        probe.unlink()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(
            f"Cannot write into {folder} ({reason.lower()}): move it to a folder you can write, e.g. "
            f"{key}=/scratch/{folder.name}."
        ) from None
    return folder
