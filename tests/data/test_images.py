"""Images read as a viewer shows them: upright by their EXIF orientation, deep grayscale scaled to 8 bits."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captioning.data.images import load_image

ORIENTATION = 0x0112  # the EXIF tag


def save_with_orientation(image: Image.Image, path, orientation: int) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    image.save(path, exif=exif.tobytes())


def test_a_phone_portrait_stored_on_its_side_is_read_upright(tmp_path):
    # Phones store a portrait photo as the sensor's landscape with Orientation 6: "turn 90 degrees clockwise".
    stored = Image.new("RGB", (80, 40), (200, 20, 20))  # red, with the sky (blue) on the left as stored
    stored.paste((20, 20, 200), (0, 0, 40, 40))
    save_with_orientation(stored, tmp_path / "portrait.jpg", 6)

    image = load_image(tmp_path / "portrait.jpg")
    assert image.size == (40, 80)  # portrait
    top, bottom = np.asarray(image)[10, 20], np.asarray(image)[70, 20]
    assert top[2] > 150 and top[0] < 60  # the sky is at the top
    assert bottom[0] > 150 and bottom[2] < 60


def test_a_full_range_16_bit_png_keeps_its_shades(tmp_path):
    gradient = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (8, 1))  # (8, 64), dark to white
    image = Image.fromarray(gradient)
    assert image.mode == "I;16"
    pixels = np.asarray(load_image(saved(image, tmp_path / "16-bit.png")))[0, :, 0]
    np.testing.assert_allclose(pixels, np.linspace(0, 255, 64), atol=1)  # not white from column 1 on


def test_a_12_bit_image_stored_in_16_bits_spans_the_8_bit_range(tmp_path):
    gradient = np.tile(np.linspace(0, 4095, 64).round().astype(np.uint16), (8, 1))  # a 12-bit sensor's values
    pixels = np.asarray(load_image(saved(Image.fromarray(gradient), tmp_path / "12-bit.png")))[0, :, 0]
    np.testing.assert_allclose(pixels, np.linspace(0, 255, 64), atol=1)


@pytest.mark.parametrize(
    "values, expected",
    [
        (np.linspace(0.0, 1.0, 64, dtype=np.float32), np.linspace(0, 255, 64)),  # floats in [0, 1]
        (np.linspace(-3.0, 7.0, 64, dtype=np.float32), np.linspace(0, 255, 64)),  # any other range: its own
        (np.linspace(0, 65535, 64).round().astype(np.int32), np.linspace(0, 255, 64)),  # 32-bit integers
    ],
)
def test_32_bit_integer_and_float_images_are_scaled_to_8_bits(tmp_path, values, expected):
    image = Image.fromarray(np.tile(values, (8, 1)))  # mode F or I
    pixels = np.asarray(load_image(saved(image, tmp_path / "deep.tif")))[0, :, 0]
    np.testing.assert_allclose(pixels, expected, atol=1)


def saved(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path
