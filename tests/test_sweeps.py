"""Sweeps as users start them: an Optuna study that ends with its best trial, the same jobs through submitit's
local launcher, the sbatch script that the Slurm launcher submits, and the machine's own local config."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir

from captioning.cli import _plugin_problems
from captioning.errors import ConfigError
from tests.helpers.runs import PROJECT, run_quietly, train_command
from train import optimized_metric_value

TINY_STEPS = ("trainer.limit_train_batches=1", "trainer.limit_val_batches=1")


def _final_val_loss(run: Path) -> float:
    """The val loss of a run's last epoch, as its history.csv recorded it."""
    return float(pd.read_csv(run / "history.csv")["val_loss"].iloc[-1])


@pytest.mark.slow  # three tiny trainings in one process
def test_an_optuna_study_of_three_trials_ends_with_the_best_trial(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "sweep"
    command = train_command(
        tmp_path,
        tmp_path / "run",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        "optimized_metric=val/loss",
        "hydra.sweeper.direction=minimize",
        f"hydra.sweep.dir={sweep}",
        "~logger",
        *TINY_STEPS,
    )
    completed = run_quietly(command, cwd=tmp_path)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-3000:]

    trials = pd.read_csv(sweep / "trials.csv")
    assert sorted(trials["trial"]) == [0, 1, 2] and set(trials["status"]) == {"COMPLETED"}
    losses = {row.trial: _final_val_loss(Path(row.folder)) for row in trials.itertuples()}
    assert trials.set_index("trial")["value"].to_dict() == pytest.approx(losses)  # each trial returned its metric
    best = min(losses, key=losses.get)

    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(losses[best])
    overrides = trials.set_index("trial").loc[best, "overrides"].split()
    best_params = {key: value for key, _, value in (override.partition("=") for override in overrides)}
    assert {key: str(value) for key, value in results["best_params"].items()} == {
        key: best_params[key]
        for key in ("model.optimizer.lr", "model.hidden_dim", "model.attention_reg", "model.dropout")
    }
    folder = Path(trials.set_index("trial").loc[best, "folder"])  # <sweep>/<trial>[_<its overrides>]
    hidden = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    assert str(hidden["hidden_dim"]) == best_params["model.hidden_dim"]  # the trial trained what it says
    last_lines = "\n".join(completed.stdout.strip().splitlines()[-5:])  # the log, after the progress bars
    assert f"Best trial of 3: #{best}, val/loss = {losses[best]:.6g}" in last_lines
    assert f"model.hidden_dim={best_params['model.hidden_dim']}" in last_lines and str(folder) in last_lines


@pytest.mark.slow  # two tiny trainings, each a process of its own
def test_a_submitit_local_sweep_runs_each_job_as_a_process_of_its_own(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    command = train_command(
        tmp_path,
        tmp_path / "run",
        "-m",
        "hydra/launcher=submitit_local",
        "model.hidden_dim=8,16",
        f"hydra.sweep.dir={sweep}",
        "~logger",
        *TINY_STEPS,
    )
    completed = run_quietly(command, cwd=tmp_path)
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-3000:]

    job_folders = {}
    for hidden in (8, 16):
        [folder] = [
            path
            for path in sweep.iterdir()
            if (path / ".hydra" / "overrides.yaml").is_file()
            and f"model.hidden_dim={hidden}" in yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text())
        ]
        checkpoint = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
        assert checkpoint["hyper_parameters"]["hidden_dim"] == hidden
        job_folders[hidden] = folder
    # submitit ran each job as a process of its own (its job id is that process's pid), logged in .submitit/<id>/
    logs = {path.parent.name: path.read_text() for path in sweep.glob(".submitit/*/*_0_log.out")}
    assert len(logs) == 2
    for folder in job_folders.values():
        [job_id] = [job_id for job_id, text in logs.items() if f"Run directory:    {folder}\n" in text]
        assert f"JobEnvironment(job_id={job_id}," in logs[job_id]


@pytest.mark.slow  # train.py up to the submission, with stand-ins for Slurm's commands
def test_the_slurm_launcher_submits_one_array_with_the_gpus_and_nodes_of_the_trainer(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = tmp_path / "submitted.sh"
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {script}\necho "sbatch: error: a test" >&2\nexit 1\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    for command in bin_dir.iterdir():
        command.chmod(0o755)
    command = [
        sys.executable,
        str(PROJECT / "train.py"),
        "-m",
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=600",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "model.hidden_dim=256,512",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONWARNINGS": "ignore"}
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=environment)
    assert "sbatch: error: a test" in completed.stderr  # it got as far as submitting
    sbatch = script.read_text().splitlines()
    expected = {
        "#SBATCH --array=0-1%2",  # the two jobs of the sweep, as one array
        "#SBATCH --partition=gpu",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",  # one task per GPU, as Lightning's DDP wants under Slurm
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --time=600",
        "#SBATCH --cpus-per-task=8",
    }
    assert expected <= set(sbatch), sbatch
    assert any(line.startswith("srun ") for line in sbatch)


def test_the_slurm_launcher_without_slurm_and_a_missing_plugin_are_named(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    [problem] = _plugin_problems(["hydra/launcher=submitit_slurm"], multirun=True)
    assert "does not have" in problem and "hydra/launcher=submitit_local" in problem
    assert _plugin_problems(["hydra/launcher=submitit_slurm"], multirun=False) == []  # no launcher runs then
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    [problem] = _plugin_problems(["hparams_search=optuna"], multirun=True)
    assert "pip install -e '.[sweeps]'" in problem


def test_the_optimized_metric_is_read_from_what_the_run_logged():
    logged = {"val/loss": torch.tensor(2.5), "val/bleu4": torch.tensor(0.25)}
    assert optimized_metric_value(logged, "val/bleu4") == 0.25
    assert optimized_metric_value(logged, None) is None
    with pytest.raises(
        ConfigError, match=r"optimized_metric=val/cider was not logged by this run \(it logged val/bleu4, val/loss\)"
    ):
        optimized_metric_value(logged, "val/cider")


def test_a_local_config_of_the_machine_comes_after_the_others_and_before_the_command_line(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(PROJECT / "conf", conf)
    (conf / "local" / "default.yaml").unlink(missing_ok=True)  # a developer's own
    with initialize_config_dir(str(conf), version_base="1.3"):
        without = compose("train", overrides=["paths.root_dir=/r"])
    (conf / "local" / "default.yaml").write_text(
        "# @package _global_\npaths:\n  cache_dir: /scratch/cache\ntrainer:\n  devices: 4\n"
    )
    with initialize_config_dir(str(conf), version_base="1.3"):
        local = compose("train", overrides=["paths.root_dir=/r", "trainer.devices=2"])
    assert without.paths.cache_dir == "/r/cache" and local.paths.cache_dir == "/scratch/cache"
    assert local.trainer.devices == 2  # the command line still wins
    ignored = (PROJECT / ".gitignore").read_text().splitlines()
    assert "/conf/local/default.yaml" in ignored
