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


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    import pytest
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from captioning.training.checkpoint_io import AtomicCheckpointIO

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(1)}, path)

    def killed_while_writing(self, checkpoint, partial, storage_options=None):
        partial.write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(2)}, path)
    assert torch.load(path, weights_only=True)["step"] == 1  # the previous checkpoint, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
