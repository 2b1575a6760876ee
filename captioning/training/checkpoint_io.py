"""Checkpoint files that are either complete or absent, written beside their target and nowhere else."""

from __future__ import annotations

import errno
import io
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from captioning.errors import CaptioningError


class DiskFullError(CaptioningError):
    """A checkpoint did not fit on its disk."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint under a temporary name in its own folder and renames it: a run killed while saving
    last.ckpt keeps the previous, complete last.ckpt instead of a truncated one.

    Lightning's own writer stages every file in the system's temporary folder first (fsspec's transaction),
    which fails at the first save where that folder is small; nothing here touches it."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # in memory first: its size is known before the disk is touched
        needed = buffer.getbuffer().nbytes
        if shutil.disk_usage(path.parent).free < needed:
            raise _disk_full(path, needed)
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        try:
            with open(partial, "wb") as file:
                file.write(buffer.getbuffer())
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, path)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            raise _disk_full(path, needed) from error
        finally:
            partial.unlink(missing_ok=True)


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path):
        path = path.parent
    return path


def _disk_full(path: Path, needed: int) -> DiskFullError:
    free = shutil.disk_usage(path.parent).free
    return DiskFullError(
        f"No space left for {path}: it needs {needed / 1e6:.1f} MB, and the disk mounted at "
        f"{_mount_point(path.parent)} has {free / 1e6:.1f} MB free. The previous {path.name}, if any, is intact. "
        "Free space there, or write the run elsewhere (hydra.run.dir=DIR), then resume with ckpt_path=<last.ckpt>."
    )
