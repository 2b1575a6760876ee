"""Checkpoint files that are either complete or absent, whenever the process is killed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint under a temporary name and renames it: a run killed while saving last.ckpt
    keeps the previous, complete last.ckpt instead of a truncated one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        try:
            super().save_checkpoint(checkpoint, partial, storage_options)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
