"""Bad paths, configurations and checkpoints end with one paragraph naming the problem: no traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from captioning.errors import CheckpointError
from captioning.model.checkpoint import read_checkpoint
from tests.helpers.runs import PROJECT


class Payload:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_carrying_a_pickled_object_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="pickled objects, which are refused"):
        read_checkpoint(path)
    assert not marker.exists()


def test_a_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"weight": torch.randn(64, 64)}}, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupted, truncated"):
        read_checkpoint(path)


def run(script: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PROJECT / script), *overrides, f"hydra.run.dir={cwd / 'run'}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # starts the entry points as processes
@pytest.mark.parametrize(
    ("script", "overrides", "message"),
    [
        ("train.py", ["data=flickr30k", "data.root={tmp}/nowhere"], "does not exist. Point data.root"),
        ("train.py", ["data=flickr30k", "data.root={tmp}", "data.format=coco"], "data.format=coco is not one of auto"),
        ("train.py", ["data=flickr8k", "data.root={tmp}/one_image"], "The train split of"),  # its image is test's
        ("evaluate.py", ["ckpt={tmp}/missing.ckpt"], "does not exist: pass the path of a .ckpt"),
        ("caption.py", ["ckpt={tmp}/bad.ckpt", "image={tmp}"], "bad.ckpt is not a checkpoint"),
        (
            "train.py",
            ["model.encoder.weights=IMAGENET_BEST", "debug=default"],
            "model.encoder.weights=IMAGENET_BEST is not one of IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT, null",
        ),
        ("train.py", ["data=flickr30k", "data.root={tmp}/photo.png"], "is a file, not a folder: data.root is"),
        # A mistyped key, named with the nearest ones before Hydra starts.
        ("train.py", ["debug=default", "trainer.max_epoch=3"], "Did you mean trainer.max_epochs=3"),
        ("train.py", ["debug=default", "+trainer.max_epoch=3"], "lightning.pytorch.Trainer does not take. Did you"),
        ("evaluate.py", ["ckpt={tmp}/bad.ckpt", "eval.beam=2"], "Did you mean eval.beam_size=2"),
        # Values that cannot work, named with a valid example before anything is built.
        ("train.py", ["debug=default", "data.batch_size=0"], "data.batch_size=0 cannot work: it must be a batch"),
        ("train.py", ["debug=default", "model.optimizer.lr=abc"], "e.g. model.optimizer.lr=1e-3"),
        ("train.py", ["data=flickr30k"], "data.root has no value: pass one, e.g. data.root="),
        ("evaluate.py", ["ckpt={tmp}/bad.ckpt", "eval.beam_size=0"], "eval.beam_size=0 cannot work"),
        ("evaluate.py", [], "ckpt has no value: pass one, e.g. ckpt=outputs/<run>/checkpoints/best.ckpt"),
        ("caption.py", ["ckpt={tmp}/bad.ckpt", "image={tmp}/photo.png", "beam_size=0"], "e.g. beam_size=3"),
        ("caption.py", ["image={tmp}/photo.png"], "ckpt has no value"),
        ("caption.py", ["ckpt={tmp}/bad.ckpt", "image={tmp}/albums"], "its subfolders are not searched: 2 of"),
    ],
)
def test_entry_points_fail_with_a_message_and_no_traceback(tmp_path, script, overrides, message):
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    Image.new("RGB", (32, 32)).save(tmp_path / "photo.png")
    (tmp_path / "one_image" / "Images").mkdir(parents=True)  # a Kaggle captions.txt of a single image
    Image.new("RGB", (32, 32)).save(tmp_path / "one_image" / "Images" / "photo.png")
    (tmp_path / "one_image" / "captions.txt").write_text("image,caption\nphoto.png,a black square .\n")
    for album in ("summer", "winter"):  # a folder whose images are all in subfolders
        (tmp_path / "albums" / album).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(tmp_path / "albums" / album / "photo.jpg")
    completed = run(script, *(o.format(tmp=tmp_path) for o in overrides), cwd=tmp_path)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output[-2000:]
    assert message in output
    assert "Traceback" not in output
    assert not (tmp_path / "run").exists()  # no empty run folder left behind


def test_an_empty_file_a_picture_and_a_folder_passed_as_checkpoints_say_what_they_are(tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty"):
        read_checkpoint(empty)
    picture = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(picture)
    with pytest.raises(CheckpointError, match="is not a checkpoint") as error:
        read_checkpoint(picture)
    assert "weights_only" not in str(error.value)  # never the advice to unpickle anyway
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"x": torch.zeros(1)}, run / "checkpoints" / "last.ckpt")
    with pytest.raises(CheckpointError, match=r"is a folder: its \.ckpt files are checkpoints/last\.ckpt"):
        read_checkpoint(run)
