from pathlib import Path

import pytest

from tests.helpers.layouts import tiny_shapes


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
