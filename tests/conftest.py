from pathlib import Path

import pytest

from captioning.cli import register_resolvers
from tests.helpers.layouts import tiny_shapes

register_resolvers()  # as the entry points do before Hydra composes their configs


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny built-in dataset (12 images of 64x64) shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("shapes")
    tiny_shapes(root)
    return root


@pytest.fixture(scope="session")
def shapes_entries(shapes_root: Path) -> list[dict]:
    import json

    return json.loads((shapes_root / "dataset_shapes.json").read_text())["images"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One epoch of the tiny debug run (12 shapes images of 64x64, a 16-wide model), trained once per pytest
    run for the tests that only read its checkpoints: train.py's result (best_checkpoint, last_checkpoint...)."""
    from tests.helpers.runs import compose_train
    from train import train

    return train(compose_train(tmp_path_factory.mktemp("tiny_run"), "trainer.max_epochs=1", "~logger"))
