"""Self-critical training as users run it: experiment=scst init_from=<a cross-entropy checkpoint>."""

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from captioning.config_checks import check_config
from captioning.errors import ConfigError
from tests.helpers.runs import compose_train
from train import train

pytestmark = pytest.mark.slow  # trains


def scst(tmp_path, tiny_run, *overrides: str) -> dict:
    return train(compose_train(tmp_path, "experiment=scst", f"init_from={tiny_run['last_checkpoint']}", *overrides))


def test_a_self_critical_run_starts_from_the_weights_logs_its_reward_and_keeps_the_best_by_cider(tiny_run, tmp_path):
    result = scst(tmp_path, tiny_run, "trainer.max_epochs=2")
    start = torch.load(tiny_run["last_checkpoint"], weights_only=True)
    first = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert result["global_step"] == 4  # 8 training images in batches of 4, twice: the counters start anew
    assert first["optimizer_states"][0]["param_groups"][0]["lr"] == 5e-5  # a new optimizer, at ICP's rate
    assert first["hyper_parameters"]["objective"] == "self_critical"
    moved = [name for name, weight in start["state_dict"].items() if not torch.equal(weight, first["state_dict"][name])]
    assert "decoder.output.weight" in moved  # it trained from the checkpoint's weights
    header = open(result["history"]).readline().strip().split(",")
    assert {"reward", "baseline", "greedy_reward", "entropy", "val_cider", "val_bleu4"} <= set(header)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/reward_epoch", "train/baseline", "train/greedy_reward", "train/entropy", "val/cider"} <= tags
    assert result["best_by"] == "val/cider (max)"


def test_a_resumed_self_critical_run_ends_as_one_that_never_stopped(tiny_run, tmp_path):
    straight = scst(tmp_path / "straight", tiny_run, "trainer.max_epochs=2", "~logger")
    stopped = scst(tmp_path / "stopped", tiny_run, "trainer.max_epochs=1", "~logger")
    resumed = scst(tmp_path / "resumed", tiny_run, "trainer.max_epochs=2", f"ckpt_path={stopped['last_checkpoint']}")
    assert resumed["global_step"] == straight["global_step"] == 4
    expected = torch.load(straight["last_checkpoint"], weights_only=True)["state_dict"]
    found = torch.load(resumed["last_checkpoint"], weights_only=True)["state_dict"]
    for name, weight in expected.items():
        torch.testing.assert_close(found[name], weight, rtol=0, atol=0, msg=name)


def test_self_critical_training_needs_a_checkpoint_to_start_from(tmp_path):
    with pytest.raises(ConfigError, match="Self-critical training starts from a model trained with cross-entropy"):
        check_config(compose_train(tmp_path, "experiment=scst"))
    with pytest.raises(ConfigError, match="model.samples=1 cannot work with model.baseline=mean_of_others"):
        check_config(compose_train(tmp_path, "experiment=scst", "init_from=x.ckpt", "model.samples=1"))
