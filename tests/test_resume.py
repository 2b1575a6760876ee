"""A run killed with SIGKILL mid-epoch resumes from last.ckpt and ends with the same number of steps."""

import os
import subprocess
from pathlib import Path

import pytest
import torch

from tests.helpers.runs import PROJECT, train_command

pytestmark = pytest.mark.slow  # trains, evaluates or starts processes


def run_train(tmp_path: Path, run_dir: str, *overrides: str) -> subprocess.CompletedProcess:
    command = train_command(tmp_path, tmp_path / run_dir, "~logger", "trainer.max_epochs=3", *overrides)
    environment = {**os.environ, "PYTHONPATH": str(PROJECT)}
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment)


def test_killed_mid_epoch_run_resumes_to_the_same_number_of_steps(tmp_path):
    # 3 epochs of 10 steps; last.ckpt every 2 steps; killed at step 15, in the middle of the second epoch.
    killed = run_train(
        tmp_path,
        "killed",
        "callbacks.step_checkpoint.every_n_train_steps=2",
        "+callbacks.killer._target_=tests.helpers.killer.KillAtStep",
        "+callbacks.killer.step=15",
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    interrupted = torch.load(last, weights_only=True)
    assert interrupted["global_step"] == 14 and interrupted["epoch"] == 1
    assert interrupted["optimizer_states"][0]["state"]  # Adam's moments are saved with it

    resumed = run_train(tmp_path, "resumed", f"ckpt_path={last}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 30 and final["epoch"] == 2  # as an uninterrupted run of 3 x 10 steps
    assert final["lr_schedulers"][0]["last_epoch"] == 3


def test_sigterm_saves_the_step_reached_says_how_to_resume_and_exits_143(tmp_path):
    # docker stop, systemd and SLURM send SIGTERM; here the process sends it to itself after step 15 of 30.
    stopped = run_train(
        tmp_path,
        "stopped",
        "+callbacks.signaller._target_=tests.helpers.killer.SignalAtStep",
        "+callbacks.signaller.step=15",
    )
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    last = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 15  # not the end of the previous epoch (10)
    output = stopped.stdout + stopped.stderr
    assert "Stopped by SIGTERM at step 15" in output and f"ckpt_path={last}" in output

    resumed = run_train(tmp_path, "resumed", f"ckpt_path={last}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 30


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    from captioning.training import checkpoint_io
    from captioning.training.checkpoint_io import AtomicCheckpointIO

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(1)}, path)

    def killed_while_writing(descriptor):
        raise KeyboardInterrupt  # after the bytes were written, before the rename

    monkeypatch.setattr(checkpoint_io.os, "fsync", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(2)}, path)
    assert torch.load(path, weights_only=True)["step"] == 1  # the previous checkpoint, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_training_checkpoints_never_go_through_the_temporary_folder(tmp_path, monkeypatch):
    import tempfile

    from tests.helpers.runs import compose_train
    from train import train

    def full_temporary_folder(*args, **kwargs):
        raise OSError(28, "No space left on device")  # a small, full $TMPDIR

    for name in ("mkstemp", "NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, full_temporary_folder)
    result = train(compose_train(tmp_path, "~logger", "trainer.max_steps=2"))
    assert torch.load(result["last_checkpoint"], weights_only=True)["global_step"] == 2


def test_a_full_disk_names_the_disk_and_the_space_needed(tmp_path, monkeypatch):
    from captioning.training import checkpoint_io
    from captioning.training.checkpoint_io import AtomicCheckpointIO, DiskFullError

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(1)}, path)
    usage = checkpoint_io.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(checkpoint_io.shutil, "disk_usage", lambda folder: usage._replace(free=100))
    with pytest.raises(DiskFullError, match=r"No space left for .*last.ckpt: it needs .* MB, and the disk mounted at"):
        AtomicCheckpointIO().save_checkpoint({"step": torch.ones(1000)}, path)
    assert torch.load(path, weights_only=True)["step"] == 1  # the previous checkpoint, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
