"""Images as they come from the wild: converted when they can be, skipped, counted and listed when not."""

import io
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tests.helpers.layouts import tiny_shapes, write_layout
from tests.helpers.runs import compose_flickr
from train import train

pytestmark = pytest.mark.slow  # trains, evaluates or starts processes


@pytest.mark.parametrize("cache_features", [True, False])
def test_bad_images_are_skipped_and_listed_and_no_good_sample_is_lost(tmp_path, cache_features):
    source = tmp_path / "source"
    entries = tiny_shapes(source, num_images=16)
    root = write_layout(tmp_path / "flickr", "karpathy", entries, source / "images")
    images = root / "flickr30k_images"
    train_files = [entry["filename"] for entry in entries if entry["split"] == "train"]  # 12 of them
    convertible, broken = train_files[:4], train_files[4:7]
    Image.new("L", (64, 64), 90).save(images / convertible[0], format="PNG")  # grayscale
    Image.new("RGBA", (64, 64), (10, 200, 10, 128)).save(images / convertible[1], format="PNG")
    cmyk = io.BytesIO()
    Image.new("CMYK", (64, 64), (0, 200, 200, 0)).save(cmyk, format="JPEG")
    (images / convertible[2]).write_bytes(cmyk.getvalue())
    Image.new("RGB", (6000, 4000), (200, 30, 30)).save(images / convertible[3], format="JPEG")  # huge
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(jpeg, format="JPEG")
    (images / broken[0]).write_bytes(jpeg.getvalue()[:200])  # truncated
    (images / broken[1]).write_bytes(b"")  # zero bytes
    (images / broken[2]).unlink()  # named in the annotations, missing on disk

    result = train(
        compose_flickr(
            tmp_path,
            root,
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1",
            "~logger",
            f"data.cache_features={cache_features}",
        )
    )

    skipped = pd.read_csv(Path(result["output_dir"]) / "skipped_images.csv")
    reasons = {Path(image).name: reason for image, reason in zip(skipped["image"], skipped["reason"])}
    assert reasons == {broken[0]: "unreadable image", broken[1]: "unreadable image", broken[2]: "missing file"}
    assert result["train_samples"] == 5 * (len(train_files) - len(broken))  # every good caption is trained on
