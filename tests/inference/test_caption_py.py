"""caption.py as users run it on folders: one without a readable image is an error (exit status 1), and it names
no attention folder that was never written."""

import sys

import pytest

from tests.helpers.runs import PROJECT, run_quietly

pytestmark = pytest.mark.slow  # starts caption.py on the tiny run's checkpoint


def test_a_folder_without_a_readable_image_exits_1_and_names_no_attention_folder(tiny_run, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    completed = run_quietly(
        [
            sys.executable,
            str(PROJECT / "caption.py"),
            f"ckpt={tiny_run['last_checkpoint']}",
            f"image={folder}",
            f"hydra.run.dir={tmp_path / 'out'}",
        ],
        cwd=tmp_path,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output[-2000:]
    assert "None of the 2 image(s) given is readable" in output and "Traceback" not in output
    assert "Attention figures in" not in output
    assert not (tmp_path / "out").exists()  # nothing was written, so no run folder is left
