"""Places a run cannot write are named with the key that moves them, and a run stopped while it builds the feature
cache leaves neither a partial cache nor an empty run folder."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.runs import PROJECT, train_command

pytestmark = pytest.mark.slow  # starts train.py

QUIET = {**os.environ, "PYTHONWARNINGS": "ignore"}


def read_only(folder: Path) -> list[str]:
    """The prefix that runs a command with `folder` on a read-only file system: a mount namespace of its own where
    this user may make one (root), else the folder's write bits removed (which root would ignore)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    probe = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o ro tmpfs "$0"', str(folder)]
    if shutil.which("unshare") is None or subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.skip("no way to make a read-only folder here: root without unshare -m and mount")
    return ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o ro tmpfs "$0" && exec "$@"', str(folder)]


@pytest.mark.parametrize(
    ("override", "unwritable", "key"),
    [
        ("paths.cache_dir={ro}/cache", "{ro}/cache/features", "paths.cache_dir="),
        ("paths.data_dir={ro}/data", "{ro}/data/shapes_tiny", "paths.data_dir="),
        ("hydra.run.dir={ro}/run", "{ro}/run", "hydra.run.dir="),
    ],
)
def test_a_read_only_place_is_named_with_the_key_that_moves_it(tmp_path, override, unwritable, key):
    folder = tmp_path / "read_only"
    prefix = read_only(folder)
    command = train_command(tmp_path, tmp_path / "run", "~logger", override.format(ro=folder))
    completed = subprocess.run([*prefix, *command], cwd=tmp_path, capture_output=True, text=True, env=QUIET)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output[-2000:]
    assert f"Cannot write into {unwritable.format(ro=folder)} (read-only file system" in output or (
        os.geteuid() != 0 and "(permission denied)" in output
    ), output[-2000:]
    assert key in output and "Traceback" not in output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("signal_name", "status"), [("SIGINT", 1), ("SIGTERM", 143)])
def test_a_run_stopped_while_building_the_cache_leaves_no_partial_cache_and_no_run_folder(
    tmp_path, signal_name, status
):
    # One image per batch at 256x256: the build takes seconds, and its partial file exists after the first batch.
    command = train_command(tmp_path, tmp_path / "run", "model.encoder.image_size=256", "data.encode_batch_size=1")
    process = subprocess.Popen(
        command,
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=QUIET,
        # Ctrl-C's default, as from a terminal: pytest started in the background by a shell (`make test &`)
        # ignores SIGINT, and its children would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    cache = tmp_path / "cache" / "features"
    deadline = time.monotonic() + 120
    while not list(cache.glob("*.partial-*.npy")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the build ended before it could be stopped"
    process.send_signal(getattr(signal, signal_name))
    output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == status, output[-2000:]
    assert list(cache.iterdir()) == []  # no partial file, and nothing that looks like a cache
    assert not (tmp_path / "run").exists(), sorted(str(path) for path in (tmp_path / "run").rglob("*"))
