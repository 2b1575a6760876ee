"""Values that cannot work are named, with a valid example, as soon as the config is composed; values that work
otherwise than a user may expect are said."""

import logging
import re

import pytest
from omegaconf import OmegaConf

from captioning.config_checks import check_config
from captioning.errors import ConfigError
from tests.helpers.runs import compose_config, compose_evaluate, compose_flickr, compose_train


@pytest.mark.parametrize(
    "overrides",
    [[], ["experiment=reference", "trainer.accelerator=gpu"], ["experiment=quickstart"], ["trainer=gpu"]],
)
def test_the_shipped_configurations_pass(tmp_path, overrides):
    check_config(compose_train(tmp_path, *overrides))


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        (["trainer.accelerator=cpu"], "on this machine's CPU"),
        (["trainer.accelerator=gpu", "trainer.devices=2"], "with several processes"),
    ],
)
def test_the_reference_compiling_its_step_is_refused_where_training_takes_the_packed_path(tmp_path, overrides, where):
    with pytest.raises(
        ConfigError, match=rf"the packed path \({where}\), which does not compile: add model.compile_step=false"
    ):
        check_config(compose_train(tmp_path, "experiment=reference", *overrides))
    check_config(compose_train(tmp_path, "experiment=reference", *overrides, "model.compile_step=false"))


def test_evaluate_and_caption_configurations_pass(tmp_path):
    check_config(compose_evaluate(tmp_path, "ckpt=model.ckpt"))
    check_config(compose_config("caption", ["ckpt=model.ckpt", "image=photo.jpg", f"paths.root_dir={tmp_path}"]))


def test_every_problem_is_named_in_one_paragraph(tmp_path):
    cfg = compose_train(
        tmp_path,
        "data.batch_size=0",
        "model.optimizer.lr=abc",
        "eval.beam_size=0",
        "model.dropout=1",
        "eval.confidence=1.5",
        "eval.bootstrap_resamples=-1",
    )
    with pytest.raises(ConfigError) as error:
        check_config(cfg)
    message = str(error.value)
    assert "\n" not in message
    for expected in (
        "data.batch_size=0 cannot work: it must be a batch size of 1 or more, e.g. data.batch_size=32.",
        "model.optimizer.lr=abc cannot work: it must be a learning rate above 0, e.g. model.optimizer.lr=1e-3.",
        "eval.beam_size=0 cannot work",
        "model.dropout=1 cannot work",
        "eval.confidence=1.5 cannot work: it must be a level between 0 and 1, e.g. eval.confidence=0.95.",
        "eval.bootstrap_resamples=-1 cannot work",
    ):
        assert expected in message


@pytest.mark.parametrize(
    ("override", "accepted"),
    [
        ("data.num_workers=0", True),
        ("data.num_workers=-1", False),
        ("data.batch_size=2.5", False),
        ("data.batch_size=true", False),
        ("model.gradient_clip_norm=null", True),
        ("trainer.max_epochs=-2", False),
    ],
)
def test_numbers_are_checked_for_their_kind_and_range(tmp_path, override, accepted):
    cfg = compose_train(tmp_path, override)
    if accepted:
        check_config(cfg)
    else:
        with pytest.raises(ConfigError, match=override.split("=")[0]):
            check_config(cfg)


def test_training_without_an_end_is_said(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        check_config(compose_train(tmp_path, "trainer.max_epochs=-1"))
    assert "trainer.max_epochs=-1 and no trainer.max_steps: training goes on until it is stopped" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        check_config(compose_train(tmp_path, "trainer.max_epochs=-1", "trainer.max_steps=100"))
    assert caplog.text == ""


def test_a_missing_value_is_named_without_resolving_the_rest():
    cfg = OmegaConf.create({"ckpt": "???", "paths": {"output_dir": "${hydra:runtime.output_dir}"}})
    with pytest.raises(ConfigError, match=r"^ckpt has no value: pass one, e\.g\. ckpt=outputs/"):
        check_config(cfg)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.train_step=fastest", "model.train_step=fastest is not one of auto, packed"),
        ("trainer.precision=bf32", "trainer.precision=bf32 is not one of"),
        ("trainer.precision=16-mixed", "trainer.precision=16-mixed is not supported"),
        ("eval.split=train", "eval.split=train is not one of test, val"),
        ("data.format=coco", "data.format=coco is not one of auto, karpathy"),
        ("model.encoder.weights=IMAGENET1K_V3", "model.encoder.weights=IMAGENET1K_V3 is not one of IMAGENET1K_V1"),
    ],
)
def test_a_key_with_a_fixed_set_of_choices_is_checked_before_any_annotation_is_read(tmp_path, override, message):
    from train import train

    # data.root does not exist: reading the annotations would raise DatasetNotFoundError instead.
    cfg = compose_flickr(tmp_path, tmp_path / "nowhere", override)
    with pytest.raises(ConfigError, match=re.escape(message)):
        train(cfg)
