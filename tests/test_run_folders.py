"""Every run writes into a folder of its own: runs started together get two, a folder that a live run owns is
refused, and a run that fails on its arguments leaves no empty folder behind for TensorBoard to list."""

import os
import re
import socket
import subprocess
import sys
import time

import pytest
from hydra import compose, initialize_config_dir

from captioning.errors import ConfigError
from captioning.run_folders import LOCK_NAME, lock_run_folder, run_suffix
from tests.helpers.runs import PROJECT, train_command

QUIET = {**os.environ, "PYTHONWARNINGS": "ignore"}


def tiny_training(tmp_path, name: str, *overrides: str) -> list[str]:
    """train.py as a shell loop types it: no hydra.run.dir, so the run folder is chosen under ./outputs."""
    return [
        sys.executable,
        str(PROJECT / "train.py"),
        "debug=default",
        f"paths.data_dir={tmp_path / name / 'data'}",
        f"paths.cache_dir={tmp_path / name / 'cache'}",
        "trainer.max_steps=1",
        "trainer.limit_val_batches=1",
        "~logger",
        *overrides,
    ]


@pytest.mark.slow  # two tiny trainings, side by side
def test_two_trainings_started_together_get_a_folder_each(tmp_path):
    processes = [
        subprocess.Popen(
            tiny_training(tmp_path, name),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=QUIET,
        )
        for name in ("a", "b")
    ]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]

    folders = sorted((tmp_path / "outputs").iterdir())
    assert len(folders) == 2
    for folder in folders:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{6}", folder.name), folder.name
        assert (folder / "checkpoints" / "last.ckpt").is_file()
        assert not (folder / LOCK_NAME).exists()  # handed back when the run ended


@pytest.mark.parametrize(
    ("environment", "suffix"),
    [
        ({}, r"[0-9a-f]{6}"),  # a shell loop
        ({"SLURM_JOB_ID": "4242"}, r"job4242-[0-9a-f]{6}"),  # a loop inside a Slurm job
        ({"SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": "7", "SLURM_STEP_ID": "0"}, r"job4242-7-0"),
        ({"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "3"}, r"job4242-3"),  # the ranks of an srun step agree
        ({"TORCHELASTIC_RUN_ID": "5f0c2a9e-77"}, r"run5f0c2a9e-77"),  # so do torchrun's workers
    ],
)
def test_the_folder_suffix_is_random_unless_the_processes_of_one_run_must_agree(monkeypatch, environment, suffix):
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_STEP_ID", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    run_suffix.cache_clear()
    try:
        assert re.fullmatch(suffix, run_suffix()) and run_suffix() == run_suffix()  # drawn once per process
    finally:
        run_suffix.cache_clear()


@pytest.mark.slow  # starts a training and a second run into its folder
def test_a_run_never_writes_into_the_folder_of_a_live_run(tmp_path):
    folder = tmp_path / "shared"
    owner = subprocess.Popen(
        train_command(tmp_path, folder, "~logger", "trainer.max_epochs=1000", "seed=1"),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=QUIET,
    )
    try:
        deadline = time.monotonic() + 120
        while not (folder / ".hydra" / "config.yaml").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert owner.poll() is None and (folder / LOCK_NAME).read_text().split() == [
            socket.gethostname(),
            str(owner.pid),
        ]
        second = subprocess.run(
            train_command(tmp_path, folder, "~logger", "seed=2"),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env=QUIET,
        )
    finally:
        owner.kill()
        owner.wait()
    output = second.stdout + second.stderr
    assert second.returncode == 1, output[-2000:]
    assert f"{folder} is the folder of a run still in progress (process {owner.pid})" in output
    assert "Leave out hydra.run.dir" in output and "Traceback" not in output
    assert "seed: 1" in (folder / ".hydra" / "config.yaml").read_text()  # the owner's, not overwritten


def test_the_lock_of_a_run_that_is_over_is_taken_over(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_NAME).write_text(f"{socket.gethostname()} {finished.stdout.strip()}")
    lock_run_folder(tmp_path)
    assert (tmp_path / LOCK_NAME).read_text() == f"{socket.gethostname()} {os.getpid()}"
    with pytest.raises(ConfigError, match="delete .*shared/.run.lock"):
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / LOCK_NAME).write_text(f"another-host {os.getpid() + 1}")
        lock_run_folder(tmp_path / "shared")  # a run on another machine: cannot tell, so refused
    (tmp_path / LOCK_NAME).unlink()


@pytest.mark.slow  # starts caption.py
def test_a_run_that_fails_on_its_arguments_leaves_no_folder(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(PROJECT / "caption.py"), f"ckpt={tmp_path / 'model.ckpt'}", "image=nowhere.jpg"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=QUIET,
    )
    assert completed.returncode == 1 and "does not exist" in completed.stderr + completed.stdout
    assert not any(path.is_file() or any(path.iterdir()) for path in (tmp_path / "outputs").iterdir())


@pytest.mark.parametrize(
    ("entry_point", "overrides"), [("evaluate", ["ckpt=m.ckpt"]), ("caption", ["ckpt=m", "image=p"])]
)
def test_evaluations_and_captions_get_a_folder_of_their_own_too(entry_point, overrides, monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_STEP_ID", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    with initialize_config_dir(str(PROJECT / "conf"), version_base="1.3"):
        cfg = compose(entry_point, overrides=overrides, return_hydra_config=True)
        training = compose("train", return_hydra_config=True)
    stamp = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d"
    folder = re.fullmatch(rf"outputs/{stamp}_([0-9a-f]{{6}})_{entry_point}", cfg.hydra.run.dir)
    assert folder, cfg.hydra.run.dir
    # One suffix per process: a training composed beside it names the same one.
    assert training.hydra.run.dir.endswith("_" + folder.group(1))
