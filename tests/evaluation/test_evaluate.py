"""evaluate.py and caption.py from checkpoints made by tiny training runs in the test."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from caption import caption
from captioning.errors import CheckpointError, ConfigError, DatasetFormatError, DatasetNotFoundError
from evaluate import evaluate
from tests.helpers.layouts import memorisable_dataset, tiny_shapes, write_layout
from tests.helpers.runs import compose_config, compose_evaluate, compose_flickr, compose_train
from train import train

pytestmark = pytest.mark.slow  # trains, evaluates or starts processes


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A checkpoint of a 2-epoch run on tiny shapes images encoded at 224x224 (7x7 regions)."""
    tmp_path = tmp_path_factory.mktemp("trained")
    result = train(compose_train(tmp_path, "model.encoder.image_size=224", "trainer.max_epochs=2", "~logger"))
    return Path(result["best_checkpoint"])


def test_evaluate_writes_metrics_predictions_samples_and_figures(trained, tmp_path):
    result = evaluate(
        compose_evaluate(
            tmp_path,
            f"ckpt={trained}",
            "eval.beam_size=2",
            "eval.length_penalty=0.5",
            "eval.loss_samples=7",
            "eval.num_figures=2",
        )
    )
    out = tmp_path / "eval"

    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "test_loss",
        "test_loss_full",
        "bleu_1",
        "bleu_2",
        "bleu_3",
        "bleu_4",
        "meteor",
        "rouge_l",
        "cider",
        "grounding",
        "grounding_chance",
        "attention_peak",
        "attention_change",
        "repeated_trigrams",
        "mean_length",
        "num_images",
        "empty_captions",
        "beam_size",
        "length_penalty",
        "checkpoint",
        "split",
    ):
        assert key in metrics, key
    assert metrics["num_images"] == 2 and metrics["beam_size"] == 2 and metrics["split"] == "test"
    assert metrics["length_penalty"] == 0.5
    assert metrics["loss_samples"] == 7 and metrics["test_loss"] > 0 and metrics["test_loss_full"] > 0
    assert metrics == result["metrics"]
    assert 1 / 49 <= metrics["attention_peak"] <= 1 and metrics["attention_change"] >= 0

    predictions = json.loads((out / "predictions.json").read_text())
    assert len(predictions) == 2
    for prediction in predictions:
        assert len(prediction["references"]) == 5
        assert len(prediction["attention"]) == len(prediction["generated"].split())  # one row per word
        for row in prediction["attention"]:
            assert len(row) == 49 and abs(sum(row) - 1) < 1e-5
    empty = sum(prediction["generated"] == "" for prediction in predictions) / len(predictions)
    assert metrics["empty_captions"] == empty
    assert (out / "samples.md").read_text().startswith("| image | generated | ground truth |")
    figures = sorted((out / "attention").glob("*.png"))
    assert len(figures) == 2 and all(Image.open(figure).size[0] > 200 for figure in figures)
    assert (out / "tensorboard").is_dir()


def test_the_test_loss_sample_is_drawn_by_its_seed(trained, tmp_path):
    def test_loss(folder: str, seed: int) -> float:
        settings = ["eval.loss_samples=3", f"eval.seed={seed}", "eval.num_figures=0", "~logger"]
        return evaluate(compose_evaluate(tmp_path / folder, f"ckpt={trained}", *settings))["metrics"]["test_loss"]

    # 3 of the 10 test captions: the same seed draws the same ones, another seed others.
    assert test_loss("a", seed=0) == test_loss("b", seed=0)
    assert test_loss("c", seed=1) != test_loss("a", seed=0)


def test_evaluate_refuses_a_missing_checkpoint_and_an_unknown_split(trained, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        evaluate(compose_evaluate(tmp_path, f"ckpt={tmp_path / 'nope.ckpt'}"))
    with pytest.raises(ConfigError, match="eval.split=train is not one of test, val"):
        evaluate(compose_evaluate(tmp_path, f"ckpt={trained}", "eval.split=train", "~logger"))


def test_blind_evaluation_captions_from_another_image(trained, tmp_path):
    seeing = evaluate(compose_evaluate(tmp_path / "a", f"ckpt={trained}", "~logger"))
    blind = evaluate(compose_evaluate(tmp_path / "b", f"ckpt={trained}", "eval.blind=true", "~logger"))
    predictions = json.loads((tmp_path / "a" / "eval" / "predictions.json").read_text())
    blind_predictions = json.loads((tmp_path / "b" / "eval" / "predictions.json").read_text())
    # The test split has 2 images in one batch: each is captioned from the other's features.
    assert [p["generated"] for p in blind_predictions] == [p["generated"] for p in predictions][::-1]
    assert blind["metrics"]["blind"] is True and seeing["metrics"]["blind"] is False


def test_caption_any_image_mode_and_size(trained, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("L", (300, 120), 128).save(folder / "gray.png")
    Image.new("RGBA", (50, 80), (200, 10, 10, 100)).save(folder / "rgba.png")
    Image.new("CMYK", (640, 480), (0, 255, 255, 0)).save(folder / "cmyk.jpg")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    cfg = compose_config(
        "caption",
        [
            f"ckpt={trained}",
            f"image={folder}",
            "beam_size=2",
            "length_penalty=0.5",
            f"paths.root_dir={tmp_path}",
            f"paths.output_dir={tmp_path / 'out'}",
        ],
    )
    results = caption(cfg)
    assert [Path(result["image"]).name for result in results] == ["cmyk.jpg", "gray.png", "rgba.png"]
    for result in results:
        assert Path(result["figure"]).is_file()
    cfg.image = str(tmp_path / "missing.jpg")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        caption(cfg)


def test_a_model_that_overfits_a_few_images_gets_bleu4_above_0_9(tmp_path):
    root = memorisable_dataset(tmp_path / "overfit", tmp_path / "source", eval_split="test")
    result = train(
        compose_flickr(
            tmp_path,
            root,
            "model.dropout=0",
            "model.optimizer.lr=0.01",
            "model.hidden_dim=64",
            "model.embed_dim=32",
            "model.attention_dim=32",
            "trainer.max_epochs=10",
            "+trainer.check_val_every_n_epoch=10",
            "~logger",
            "data.batch_size=8",
        )
    )
    evaluation = evaluate(
        compose_evaluate(
            tmp_path, f"ckpt={result['last_checkpoint']}", "eval.beam_size=3", "eval.split=test", "~logger"
        )
    )
    assert evaluation["metrics"]["bleu_4"] > 0.9


def test_evaluation_encodes_only_the_split_it_scores(trained, tmp_path):
    fresh = tmp_path / "fresh_cache"  # a machine without the training run's cache
    evaluate(compose_evaluate(tmp_path / "a", f"ckpt={trained}", f"data.feature_cache_dir={fresh}", "~logger"))
    [cache] = fresh.glob("*.npy")
    assert np.load(cache, mmap_mode="r").shape[0] == 2  # the 2 test images, not the 12 of the dataset

    training_cache = Path(torch.load(trained, weights_only=True)["run_config"]["data"]["feature_cache_dir"])
    before = sorted(training_cache.iterdir())
    evaluate(compose_evaluate(tmp_path / "b", f"ckpt={trained}", "~logger"))
    assert sorted(training_cache.iterdir()) == before  # the training run's cache of every image is reused


def test_metric_names_say_which_split_they_score(trained, tmp_path):
    result = evaluate(compose_evaluate(tmp_path, f"ckpt={trained}", "eval.split=val", "eval.num_figures=1"))
    assert {"val_loss", "val_loss_full"} <= result["metrics"].keys()
    assert not any(name.startswith("test") for name in result["metrics"])
    events = EventAccumulator(str(tmp_path / "eval" / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert {"eval_val/loss", "eval_val/loss_full", "eval_val/bleu_4"} <= set(events.Tags()["scalars"])
    assert not any(tag.startswith("test") for tag in events.Tags()["scalars"])


def test_images_of_one_name_and_different_formats_keep_a_figure_each(trained, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for suffix in ("jpg", "png", "bmp"):
        Image.new("RGB", (60, 40), (200, 30, 30)).save(folder / f"shape.{suffix}")
    cfg = compose_config(
        "caption", [f"ckpt={trained}", f"image={folder}", f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}"]
    )
    figures = {result["figure"] for result in caption(cfg)}
    assert len(figures) == 3 and all(Path(figure).is_file() for figure in figures)


def flickr_folder(tmp_path: Path, polluted: bool) -> Path:
    """A Kaggle-layout Flickr30k folder (results.csv) whose captions all hold the word "flickrword", so that a
    vocabulary shows which annotations were read; `polluted`: it also holds the built-in dataset, as an earlier
    version generated it there (dataset_shapes.json and images/)."""
    source = tmp_path / "source"
    entries = tiny_shapes(source)
    for entry in entries:
        (source / "images" / entry["filename"]).rename(source / "images" / f"10000{entry['imgid']}.png")
        entry["filename"] = f"10000{entry['imgid']}.png"
        entry["sentences"] = [{"raw": sentence["raw"] + " flickrword"} for sentence in entry["sentences"]]
    root = write_layout(tmp_path / "flickr30k", "results_csv", entries, source / "images")
    if polluted:
        tiny_shapes(tmp_path / "generated")
        for name in ("dataset_shapes.json", "images"):
            (tmp_path / "generated" / name).rename(root / name)
    return root


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_a_shapes_checkpoint_is_not_evaluated_on_a_flickr_folder_and_writes_nothing_there(trained, tmp_path):
    root = flickr_folder(tmp_path, polluted=False)
    before = folder_bytes(root)
    with pytest.raises(DatasetFormatError, match="it holds other files") as error:
        evaluate(compose_evaluate(tmp_path, f"ckpt={trained}", f"data.root={root}", "~logger"))
    assert "leave data.root out of evaluate.py" in str(error.value) and "\n" not in str(error.value)
    assert folder_bytes(root) == before  # byte for byte, and nothing added

    # A Flickr run on that folder afterwards reads its results.csv.
    result = train(compose_flickr(tmp_path, root, "trainer.max_steps=1", "trainer.limit_val_batches=0", "~logger"))
    vocabulary = torch.load(result["last_checkpoint"], weights_only=True)["hyper_parameters"]["vocabulary"]
    assert "flickrword" in vocabulary


def test_a_flickr_run_never_reads_a_generated_shapes_dataset_in_its_folder(tmp_path):
    root = flickr_folder(tmp_path, polluted=True)
    datamodule = instantiate(compose_flickr(tmp_path, root).data, _convert_="all")
    captions = datamodule.load_annotations()
    assert captions["caption"].str.endswith("flickrword").all() and len(captions) == 60
    assert captions["image"].str.startswith("flickr30k_images/flickr30k_images/1000").all()
