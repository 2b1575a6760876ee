"""Flickr8k as people download it: the authors' token file and split lists, Kaggle's captions.txt, Karpathy's JSON."""

import logging

import pytest
import torch
from hydra.utils import instantiate

from captioning.data.datamodule import CaptionDataModule
from captioning.data.readers import read_annotations
from tests.helpers.layouts import DOWNLOADS, write_layout
from tests.helpers.runs import compose_config, compose_train
from train import train


def split_by_name(table) -> dict[str, str]:
    return {image.rsplit("/", 1)[-1]: split for image, split in zip(table.captions["image"], table.captions["split"])}


def test_the_official_split_lists_beside_the_token_file_give_its_split(tmp_path, shapes_root, shapes_entries, caplog):
    entries = [dict(entry) for entry in shapes_entries]
    entries[-1]["split"] = "none"  # listed in the token file only, as 91 images of the real Flickr8k are
    root = write_layout(tmp_path, "token", entries, shapes_root / "images", "flickr8k")

    table = read_annotations(root)

    assert table.annotation_file.name == "Flickr8k.token.txt"  # not Flickr8k.lemma.token.txt beside it
    assert set(table.captions["caption"]) == {s["raw"] for e in entries for s in e["sentences"]}
    expected = {entry["filename"]: entry["split"] for entry in entries[:-1]} | {entries[-1]["filename"]: "train"}
    assert split_by_name(table) == expected
    assert (
        "1 image(s) of Flickr8k.token.txt are not in Flickr_8k.trainImages.txt, Flickr_8k.devImages.txt, "
        f"Flickr_8k.testImages.txt; they are used for training (first: {entries[-1]['filename']})" in caplog.text
    )


def test_the_token_file_in_a_folder_of_its_own_is_found_with_its_split_lists(tmp_path, shapes_root, shapes_entries):
    root = write_layout(tmp_path, "token", shapes_entries, shapes_root / "images", "flickr8k")
    (root / "Flickr8k_text").mkdir()  # where Flickr8k_text.zip unpacks on some systems
    for text_file in root.glob("*.txt"):
        text_file.rename(root / "Flickr8k_text" / text_file.name)

    table = read_annotations(root)

    assert table.annotation_file == root / "Flickr8k_text" / "Flickr8k.token.txt"
    assert split_by_name(table) == {entry["filename"]: entry["split"] for entry in shapes_entries}
    assert all((root / image).is_file() for image in table.captions["image"])


def test_an_image_listed_as_jpg_1_is_reported_missing_and_lends_no_caption_to_the_real_file(
    tmp_path, shapes_root, shapes_entries, caplog
):
    root = write_layout(tmp_path, "token", shapes_entries, shapes_root / "images", "flickr8k")
    name = shapes_entries[0]["filename"]  # Flickr8k.token.txt lists both 2258277193_586949ec62.jpg and ...jpg.1
    copy_lines = [f"{name}.1#{n}\tThree people are waiting on a train platform number {n} ." for n in range(5)]
    with (root / "Flickr8k.token.txt").open("a") as token_file:
        token_file.write("\n".join(copy_lines) + "\n")
    datamodule = CaptionDataModule(str(root))

    captions = datamodule.load_annotations()

    own = {sentence["raw"] for sentence in shapes_entries[0]["sentences"]}
    assert set(captions.loc[captions["image"] == f"Flicker8k_Dataset/{name}", "caption"]) == own
    assert not captions["caption"].str.contains("train platform").any()
    assert datamodule.skipped_images == [{"image": f"Flicker8k_Dataset/{name}.1", "reason": "missing file"}]
    assert "malformed" not in caplog.text
    assert f"1 image(s) named in Flickr8k.token.txt are missing and skipped (first: Flicker8k_Dataset/{name}.1)" in (
        caplog.text
    )


def test_kaggle_captions_txt_with_a_karpathy_json_beside_uses_its_split_and_finds_the_images(
    tmp_path, shapes_root, shapes_entries, caplog
):
    root = write_layout(tmp_path, "captions_txt", shapes_entries, shapes_root / "images", "flickr8k")  # Images/
    write_layout(tmp_path / "karpathy", "karpathy", shapes_entries, shapes_root / "images", "flickr8k")
    (tmp_path / "karpathy" / "dataset_flickr8k.json").rename(root / "dataset_flickr8k.json")

    with caplog.at_level(logging.INFO, logger="captioning.data.readers"):
        table = read_annotations(root)

    assert split_by_name(table) == {entry["filename"]: entry["split"] for entry in shapes_entries}
    assert {image.rsplit("/", 1)[0] for image in table.captions["image"]} == {"Images"}
    assert f"Images: {root / 'Images'}/ holds 12 of the 12 images" in caplog.text


@pytest.mark.parametrize("layout", DOWNLOADS["flickr8k"])
def test_data_flickr8k_reads_each_download(tmp_path, layout, shapes_root, shapes_entries):
    root = write_layout(tmp_path / "flickr8k", layout, shapes_entries, shapes_root / "images", "flickr8k")
    cfg = compose_config("train", ["data=flickr8k", f"data.root={root}", f"paths.root_dir={tmp_path}"])
    assert cfg.data.min_word_frequency == 5 and cfg.model.encoder.weights == "IMAGENET1K_V1"  # as Flickr30k

    datamodule = instantiate(cfg.data, _convert_="all")

    assert len(datamodule.load_annotations()) == 5 * len(shapes_entries)


@pytest.mark.slow  # trains
def test_the_official_flickr8k_download_trains_and_checkpoints(tmp_path, shapes_root, shapes_entries):
    root = write_layout(tmp_path / "flickr8k", "token", shapes_entries, shapes_root / "images", "flickr8k")
    cfg = compose_train(
        tmp_path,
        "data=flickr8k",
        f"data.root={root}",
        "model.encoder.weights=null",
        "data.min_word_frequency=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "~logger",
    )

    result = train(cfg)

    assert result["global_step"] == 2 and result["train_samples"] == 5 * 8
    best = torch.load(result["best_checkpoint"], weights_only=True)
    assert best["run_config"]["data"]["root"] == str(root)
