"""A tiny run with the tutorial's encoder choices (ResNet-101, 14x14 regions), trained and evaluated as users do."""

import json
import re
from pathlib import Path

import pytest
import torch

from captioning.config_checks import check_config
from captioning.errors import ConfigError
from captioning.inference.captioner import caption_images
from tests.helpers.runs import compose_config, compose_train
from train import train


def test_the_tutorial_experiment_holds_the_tutorials_settings():
    cfg = compose_config("train", ["experiment=tutorial", "data.root=/data/coco"])
    check_config(cfg)
    encoder = cfg.model.encoder
    assert (encoder.arch, encoder.weights, encoder.grid, encoder.image_size) == ("resnet101", "IMAGENET1K_V1", 14, 256)
    sizes = (cfg.model.embed_dim, cfg.model.attention_dim, cfg.model.hidden_dim, cfg.model.dropout)
    assert sizes == (512, 512, 512, 0.5) and cfg.model.attention_reg == 1.0
    assert cfg.model.optimizer.lr == 4e-4 and cfg.data.batch_size == 32 and cfg.data.root == "/data/coco"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.encoder.arch=resnet18", "model.encoder.arch=resnet18 is not one of resnet50, resnet101, resnet152"),
        ("model.encoder.grid=8", "model.encoder.grid=8 is not one of 7, 14: e.g. model.encoder.grid=7"),
        ("model.encoder.image_size=0", "model.encoder.image_size=0 cannot work: it must be a side in pixels"),
    ],
)
def test_encoder_choices_are_checked_before_any_work(override, message):
    cfg = compose_config("train", ["experiment=tutorial", "data.root=/nowhere", override])
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_config(cfg)


@pytest.mark.slow  # trains and evaluates
def test_a_resnet101_14x14_run_attends_over_196_regions_in_its_checkpoint_predictions_and_captions(tmp_path):
    overrides = ["model.encoder.arch=resnet101", "model.encoder.grid=14", "model.encoder.weights=null"]
    result = train(compose_train(tmp_path, *overrides, "trainer.max_epochs=1", "evaluate_after=true", "~logger"))

    checkpoint = torch.load(result["best_checkpoint"], weights_only=True)
    assert checkpoint["encoder"] == {
        "weights": None,
        "random_init_seed": 0,
        "arch": "resnet101",
        "grid": 14,
        "image_size": 64,
    }
    [cache] = (tmp_path / "cache" / "features").glob("features-*.npy")
    assert json.loads(cache.with_suffix(".json").read_text())["encoder"] == "resnet101:random(seed=0):grid=14x14"

    evaluation = tmp_path / "run" / "evaluation"
    predictions = json.loads((evaluation / "predictions.json").read_text())
    rows = [row for prediction in predictions for row in prediction["attention"]]
    assert rows and all(len(row) == 196 for row in rows)  # one weight per region of the 14x14 grid, per word
    assert all(abs(sum(row) - 1) < 1e-5 for row in rows)
    assert len(list((evaluation / "attention").glob("*.png"))) == len(predictions)  # 2 test images, 5 figures asked

    image = tmp_path / "data" / "shapes_tiny" / predictions[0]["image"]
    [captioned] = caption_images(result["best_checkpoint"], [image], beam_size=1, output_dir=tmp_path / "captions")
    assert Path(captioned["figure"]).is_file()
