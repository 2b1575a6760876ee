"""Resuming a run that already reached its end says so, and how to train longer, instead of exiting 0 as if it had
trained."""

import pytest

from tests.helpers.runs import PROJECT, compose_train, run_quietly, train_command
from train import train

pytestmark = pytest.mark.slow  # trains a tiny model, then starts train.py


def test_resuming_a_finished_run_says_it_has_finished_and_how_to_train_longer(tiny_run, tmp_path):
    last = tiny_run["last_checkpoint"]  # 1 epoch of 10 steps
    completed = run_quietly(
        train_command(tmp_path, tmp_path / "resumed", f"ckpt_path={last}", "trainer.max_epochs=1", "~logger"),
        cwd=PROJECT,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output[-2000:]
    assert "The checkpoint's run has already finished: it trained 1 epoch(s) (step 10)" in output
    assert "trainer.max_epochs=1, so resuming would train nothing" in output
    assert "e.g. trainer.max_epochs=11" in output and "Traceback" not in output
    assert "Last checkpoint:" not in output  # not the old run's paths, as if it had trained
    assert not (tmp_path / "resumed").exists()  # and no empty run folder

    more = train(compose_train(tmp_path, "trainer.max_epochs=2", f"ckpt_path={last}", "~logger"))
    assert more["global_step"] == 20  # what the message advises works
