"""A phone's portrait photo (stored on its side, with an EXIF Orientation tag) and a 16-bit grayscale PNG are
encoded, cached, captioned and drawn as a viewer shows them: each exactly as its plain upright 8-bit twin."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from caption import caption
from captioning.data.datamodule import CaptionDataModule
from captioning.model.encoder import ResNet50Encoder
from tests.helpers.runs import compose_config

ORIENTATION = 0x0112  # the EXIF tag


def write_twins(photo: Image.Image, folder: Path) -> dict[str, str]:
    """Write `photo` as a phone stores a portrait (sideways JPEG, Orientation 6) and as a 16-bit grayscale PNG,
    each beside its twin: the same pixels, upright, 8 bits. Returns {image: twin}."""
    sideways = photo.transpose(Image.Transpose.ROTATE_90)  # the sensor's landscape
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # "turn 90 degrees clockwise to view"
    sideways.save(folder / "portrait.jpg", exif=exif.tobytes())
    with Image.open(folder / "portrait.jpg") as stored:  # the decoded JPEG pixels, turned upright by hand
        stored.convert("RGB").transpose(Image.Transpose.ROTATE_270).save(folder / "portrait_upright.png")
    gray = np.asarray(photo.convert("L"))  # (H, W) uint8
    Image.fromarray(gray.astype(np.uint16) * 257).save(folder / "gray16.png")  # 255 -> 65535, full range
    Image.fromarray(gray).save(folder / "gray8.png")
    return {"portrait.jpg": "portrait_upright.png", "gray16.png": "gray8.png"}


def a_photo(shapes_root: Path) -> Image.Image:
    """A portrait (48x64) shapes picture with a light-to-dark ramp, so that nothing in it is symmetric."""
    photo = Image.open(shapes_root / "images" / "shapes_00004.png").convert("RGB").resize((48, 64))
    ramp = np.linspace(1.0, 0.5, 64)[:, None, None]  # (H, 1, 1)
    return Image.fromarray((np.asarray(photo) * ramp).astype(np.uint8))


def test_the_feature_cache_encodes_them_as_their_upright_8_bit_twins(shapes_root, tmp_path):
    root = tmp_path / "photos"
    shutil.copytree(shapes_root, root)
    twins = write_twins(a_photo(shapes_root), root / "images")
    dataset = json.loads((root / "dataset_shapes.json").read_text())
    for entry, name in zip(dataset["images"][4:], [*twins, *twins.values()]):  # four training images
        (root / "images" / entry["filename"]).unlink()
        entry["filename"] = name
    (root / "dataset_shapes.json").write_text(json.dumps(dataset))

    datamodule = CaptionDataModule(
        str(root),
        feature_cache_dir=str(tmp_path / "cache"),
        encoder=ResNet50Encoder(None, image_size=64),
        generated=True,
    )
    datamodule.prepare_data()

    features = np.load(datamodule.feature_cache_path)
    row = {
        Path(image).name: torch.from_numpy(features[index].astype(np.float32))
        for index, image in enumerate(datamodule.images)
    }
    for image, twin in twins.items():
        torch.testing.assert_close(row[image], row[twin], rtol=2e-3, atol=1e-2)
    sideways = ResNet50Encoder(None)(datamodule.transform(Image.open(root / "images" / "portrait.jpg"))[None])[0]
    assert not torch.allclose(row["portrait.jpg"], sideways, rtol=0.05, atol=0.05)  # the oracle tells them apart


@pytest.mark.slow  # trains a tiny model
def test_caption_py_captions_and_draws_them_as_their_upright_8_bit_twins(shapes_root, tiny_run, tmp_path):
    run = tiny_run
    folder = tmp_path / "phone"
    folder.mkdir()
    twins = write_twins(a_photo(shapes_root), folder)
    cfg = compose_config(
        "caption",
        [
            f"ckpt={run['best_checkpoint']}",
            f"image={folder}",
            f"paths.root_dir={tmp_path}",
            f"paths.output_dir={tmp_path / 'out'}",
        ],
    )
    results = {Path(result["image"]).name: result for result in caption(cfg)}

    for image, twin in twins.items():
        assert results[image]["caption"] == results[twin]["caption"]
        drawn, drawn_twin = (np.asarray(Image.open(results[name]["figure"])) for name in (image, twin))
        assert np.array_equal(drawn, drawn_twin)  # upright and in its shades, not on its side or white
