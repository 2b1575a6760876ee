"""Composing the entry points' configs as users run them, on tiny data: the `debug` group does the shrinking."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

PROJECT = Path(__file__).resolve().parents[2]


def _paths(tmp_path: Path) -> list[str]:
    return [
        f"paths.root_dir={tmp_path}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"paths.output_dir={tmp_path / 'run'}",
    ]


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(PROJECT / "conf"), version_base="1.3"):
        return compose(name, overrides=overrides)


def compose_train(tmp_path: Path, *overrides: str) -> DictConfig:
    """A tiny training run (`debug=default`: 12 shapes images of 64x64, a 16-wide model, CPU) in `tmp_path`."""
    return compose_config("train", [*_paths(tmp_path), "debug=default", *overrides])


def compose_dataset(tmp_path: Path, dataset: str, root: Path, *overrides: str) -> DictConfig:
    """A tiny run on a dataset (`dataset`: flickr30k, flickr8k, coco) in one of its layouts, offline (random
    encoder)."""
    return compose_train(
        tmp_path,
        f"data={dataset}",
        f"data.root={root}",
        "model.encoder.weights=null",
        "data.min_word_frequency=1",
        *overrides,
    )


def compose_flickr(tmp_path: Path, root: Path, *overrides: str) -> DictConfig:
    """A tiny run on a dataset in one of the Flickr30k layouts, offline (random encoder)."""
    return compose_dataset(tmp_path, "flickr30k", root, *overrides)


def compose_evaluate(tmp_path: Path, *overrides: str) -> DictConfig:
    return compose_config(
        "evaluate", [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path / 'eval'}", *overrides]
    )


def train_command(tmp_path: Path, run_dir: Path, *overrides: str) -> list[str]:
    """train.py as a user types it, with the tiny `debug` settings, data and cache in `tmp_path` (flags such as
    -m go before the overrides, as Hydra's command line wants)."""
    flags = [override for override in overrides if override.startswith("-")]
    overrides = tuple(override for override in overrides if not override.startswith("-"))
    return [
        sys.executable,
        str(PROJECT / "train.py"),
        *flags,
        "debug=default",
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]


def run_quietly(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """An entry point as a user starts it, its output captured, Python's warnings left out of it."""
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env=environment)
