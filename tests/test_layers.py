"""The imports point one way: entry points -> training -> evaluation -> model, data -> small shared modules."""

import ast
from pathlib import Path

import pytest

from tests.helpers.runs import PROJECT

# Each layer of the package and the layers it may import; nothing imports a layer above its own.
# (sweep_names: the folder names of sweep jobs, the resolver of conf/hydra/default.yaml)
SHARED = {
    "captioning.errors",
    "captioning.folders",
    "captioning.sweep_names",
    "captioning.vocabulary",
    "captioning.visual",
}
ALLOWED = {
    "shared": set(),
    "captioning.cli": {"captioning.run_folders", "shared"},
    "captioning.run_folders": {"shared"},
    "captioning.trials": {"shared"},  # a Hydra callback of sweeps, beside run_folders
    # Beside the entry points: it names the choices of the layers below (data formats, train steps, splits).
    "captioning.config_checks": {"captioning.evaluation", "captioning.data", "captioning.model", "shared"},
    "captioning.data": {"shared"},
    "captioning.model": {"shared"},
    "captioning.evaluation": {"captioning.data", "captioning.model", "shared"},
    "captioning.inference": {"captioning.data", "captioning.model", "shared"},
    "captioning.training": {"captioning.evaluation", "captioning.data", "captioning.model", "shared"},
}


def layer_of(module: str) -> str:
    if any(module == name or module.startswith(name + ".") for name in SHARED):
        return "shared"
    return next(layer for layer in ALLOWED if module == layer or module.startswith(layer + "."))


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return {module for module in modules if module.startswith("captioning.")}


def test_no_module_imports_a_layer_above_its_own():
    wrong = []
    for path in sorted((PROJECT / "captioning").rglob("*.py")):
        module = ".".join(path.relative_to(PROJECT).with_suffix("").parts).removesuffix(".__init__")
        if module == "captioning":
            continue
        layer = layer_of(module)
        for imported in imported_modules(path):
            target = layer_of(imported)
            if target != layer and target not in ALLOWED[layer]:
                wrong.append(f"{module} imports {imported}")
    assert wrong == []


@pytest.mark.slow  # a fresh interpreter
def test_the_data_layer_loads_without_the_model():
    import subprocess
    import sys

    code = (
        "import sys, captioning.data.datamodule, captioning.data.readers, captioning.data.shapes;"
        "print([m for m in sys.modules if m.startswith('captioning.model')])"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "[]"
