"""train.py as users run it: configs composed by Hydra, tiny data, a few steps."""

import re
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata

from captioning.errors import CheckpointError
from tests.helpers.layouts import tiny_shapes, write_layout
from tests.helpers.runs import PROJECT, compose_flickr, compose_train, run_quietly, train_command
from train import train

pytestmark = pytest.mark.slow  # trains, evaluates or starts processes


def test_the_optimizer_and_scheduler_are_chosen_from_the_command_line(tmp_path):
    overrides = ["model/optimizer=adamw", "model.optimizer.lr=3e-4", "model.scheduler.step_size=2"]
    result = train(compose_train(tmp_path, *overrides, "trainer.max_steps=1", "~logger"))
    checkpoint = torch.load(result["last_checkpoint"], weights_only=True)
    group = checkpoint["optimizer_states"][0]["param_groups"][0]
    assert group["lr"] == 3e-4 and group["weight_decay"] == 0.01  # AdamW's decay, at the chosen rate
    assert checkpoint["lr_schedulers"][0]["step_size"] == 2


def test_fast_dev_run(tmp_path):
    result = train(compose_train(tmp_path, "trainer.fast_dev_run=true"))
    assert result["global_step"] == 1


def test_the_gpu_trainer_settings_train_with_gradient_clipping(tmp_path):
    # trainer=gpu is bf16 mixed precision, with the model clipping a fused Adam's gradients itself (Lightning's
    # plugin refuses to). The same plugin runs on CPU, so the settings are checked here with the accelerator swapped.
    overrides = ["trainer=gpu", "trainer.accelerator=cpu", "trainer.max_steps=3", "trainer.limit_val_batches=1"]
    result = train(compose_train(tmp_path, *overrides, "~logger"))
    assert result["global_step"] == 3
    history = Path(result["history"]).read_text().splitlines()
    assert torch.isfinite(torch.tensor(float(history[1].split(",")[2])))  # the train loss of that epoch


@pytest.mark.parametrize("layout", ["karpathy", "results_csv", "huggingface", "captions_txt"])
def test_each_flickr30k_layout_trains_and_checkpoints(tmp_path, layout):
    source = tmp_path / "source"
    entries = tiny_shapes(source)
    root = write_layout(tmp_path / layout, layout, entries, source / "images")

    cfg = compose_flickr(
        tmp_path, root, "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"
    )
    result = train(cfg)

    assert result["global_step"] == 2
    for name in ("best", "last"):
        checkpoint = torch.load(tmp_path / "run" / "checkpoints" / f"{name}.ckpt", weights_only=True)
        assert checkpoint["hyper_parameters"]["vocabulary"][:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
        assert checkpoint["encoder"]["weights"] is None
        assert not any(key.startswith("encoder.") for key in checkpoint["state_dict"])


def test_resume_continues_the_run(tiny_run, tmp_path):
    # 8 training images x 5 captions / batch 4 = 10 steps per epoch
    first = tiny_run
    assert first["global_step"] == 10
    resumed = train(compose_train(tmp_path, "trainer.max_epochs=2", f"ckpt_path={first['last_checkpoint']}", "~logger"))
    assert resumed["global_step"] == 20
    checkpoint = torch.load(resumed["last_checkpoint"], weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["lr_schedulers"][0]["last_epoch"] == 2


class LastCheckpointProbe(L.Callback):
    """Records the step that last.ckpt holds at the start of every epoch."""

    steps: list[int | None] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        saved = torch.load(last, weights_only=True)["global_step"] if last.exists() else None
        LastCheckpointProbe.steps.append(saved)


def test_last_checkpoint_is_written_every_epoch_even_when_validation_does_not_improve(tmp_path):
    LastCheckpointProbe.steps = []
    # best.ckpt by the lowest epoch number: only the first epoch "improves", as when the val loss stalls
    overrides = [
        "callbacks.model_checkpoint.monitor=epoch",
        "trainer.max_epochs=3",
        f"trainer.default_root_dir={tmp_path / 'run'}",
        "~logger",
    ]
    probe = f"+callbacks.probe._target_={LastCheckpointProbe.__module__}.LastCheckpointProbe"
    result = train(compose_train(tmp_path, *overrides, probe))
    assert LastCheckpointProbe.steps == [None, 10, 20]
    assert torch.load(result["last_checkpoint"], weights_only=True)["global_step"] == 30
    assert torch.load(result["best_checkpoint"], weights_only=True)["global_step"] == 10


def test_resume_from_a_missing_checkpoint_says_so(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        train(compose_train(tmp_path, f"ckpt_path={tmp_path / 'missing.ckpt'}"))


def test_validation_logs_losses_captions_and_an_attention_figure(tmp_path):
    result = train(compose_train(tmp_path, "trainer.max_epochs=2", "trainer.limit_train_batches=2"))

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"tensors": 0, "images": 0})
    events.Reload()
    assert {"train/loss_epoch", "val/loss", "lr-Adam"} <= set(events.Tags()["scalars"])
    assert "val/attention" in events.Tags()["images"]
    assert "val/captions/text_summary" in events.Tags()["tensors"]
    assert {"val/bleu4", "val/cider"} <= set(events.Tags()["scalars"])
    history = Path(result["history"]).read_text().splitlines()
    assert history[0] == "epoch,step,train_loss,val_loss,val_bleu4,val_cider,lr" and len(history) == 3


def test_sweep_runs_every_job_into_a_directory_named_after_its_overrides_and_draws_their_curves(tmp_path, monkeypatch):
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR"):  # W&B offline, nothing in the home folder
        monkeypatch.setenv(name, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    sweep = tmp_path / "sweep"
    command = train_command(
        tmp_path,
        tmp_path / "run",
        "-m",
        "model.hidden_dim=8,16",
        f"hydra.sweep.dir={sweep}",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "logger=[tensorboard,wandb]",
    )
    completed = run_quietly(command, cwd=PROJECT)
    assert completed.returncode == 0, completed.stderr[-3000:]

    # the paths, debug=default and the logger choice do not describe a job: they are left out of its name
    jobs = sorted(path.name for path in sweep.iterdir() if path.is_dir())
    assert jobs == [
        f"{number}_hidden_dim-{hidden}_limit_train_batches-1_limit_val_batches-1"
        for number, hidden in [(0, 8), (1, 16)]
    ]
    for job, hidden in zip(jobs, (8, 16)):
        checkpoint = torch.load(sweep / job / "checkpoints" / "last.ckpt", weights_only=True)
        assert checkpoint["hyper_parameters"]["hidden_dim"] == hidden
        events = EventAccumulator(str(sweep / job / "tensorboard"))
        events.Reload()
        session = events.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
        assert metadata.parse_session_start_info_plugin_data(session).hparams["model.hidden_dim"].number_value == hidden
        assert len(list((sweep / job / "wandb").glob("offline-run-*"))) == 1  # a W&B run of its own, not job 0's
    assert len(list((tmp_path / "cache" / "features").glob("*.npy"))) == 1  # one cache, shared by both jobs
    assert f"Sweep curves: {sweep / 'curves.png'}" in completed.stdout
    with Image.open(sweep / "curves.png") as figure:
        assert figure.format == "PNG" and figure.size == (1100, 450)


def test_resume_refuses_a_checkpoint_of_another_model_or_vocabulary(tiny_run, tmp_path):
    last = tiny_run["last_checkpoint"]
    with pytest.raises(CheckpointError, match=r"model.hidden_dim=16 \(this run: 8\)"):
        train(compose_train(tmp_path, "model.hidden_dim=8", f"ckpt_path={last}", "~logger"))

    source = tmp_path / "source"
    entries = tiny_shapes(source)
    for entry in entries:  # the same images, captioned in another language
        entry["sentences"] = [{"raw": "une forme colorée sur un fond blanc"}] * 5
    root = write_layout(tmp_path / "french", "karpathy", entries, source / "images")
    with pytest.raises(CheckpointError, match="knows only 0% of the words"):
        train(compose_flickr(tmp_path, root, f"ckpt_path={last}", "~logger"))


def test_without_a_monitoring_checkpoint_there_is_no_best_and_the_last_is_evaluated(tmp_path):
    result = train(
        compose_train(tmp_path, "~callbacks.model_checkpoint", "evaluate_after=true", "eval.loss_samples=4", "~logger")
    )
    assert result["best_checkpoint"] == "" and result["last_checkpoint"].endswith("last.ckpt")
    assert result["evaluation"]["metrics"]["checkpoint"] == str(Path(result["last_checkpoint"]).resolve())


def test_a_named_experiment_runs_in_a_folder_of_its_name():
    with initialize_config_dir(str(PROJECT / "conf"), version_base="1.3"):
        named = compose("train", overrides=["experiment=quickstart"], return_hydra_config=True)
        plain = compose("train", return_hydra_config=True)
    stamp = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_(job[\d-]+|[0-9a-f]{6})"  # date_time_<Slurm job or random suffix>
    assert re.fullmatch(rf"outputs/quickstart/{stamp}", named.hydra.run.dir)
    assert re.fullmatch(rf"outputs/{stamp}", plain.hydra.run.dir)
