"""Feature-cache building speed: JPEG decoding in DataLoader workers + batched ResNet-50 in inference mode.

python benchmarks/encoder.py --images 256 --batch-size 32 --workers 2 [--device cuda] [--no-channels-last]

Writes --images synthetic JPEGs of Flickr30k's usual size (500x375) into a temporary folder and builds a
feature cache of them exactly as training does (random encoder weights: the cost is the same).
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file (python benchmarks/x.py): make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import tempfile
import time

import numpy as np
from PIL import Image

from benchmarks.common import report
from captioning.data.feature_cache import build_feature_cache
from captioning.data.images import ImageFolderDataset, image_transform
from captioning.model.encoder import ResNet50Encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--device", default="cpu", help="where the ResNet-50 runs (cuda on a GPU machine)")
    parser.add_argument("--no-channels-last", action="store_true", help="compare with the default memory layout")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for index in range(args.images):
            pixels = rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
            paths.append(Path(folder) / f"{index}.jpg")
            Image.fromarray(pixels).save(paths[-1], quality=90)
        encoder = ResNet50Encoder(weights=None)
        dataset = ImageFolderDataset(paths, image_transform(224))
        start = time.perf_counter()
        build_feature_cache(
            Path(folder) / "features.npy",
            encoder,
            dataset,
            {},
            args.batch_size,
            args.workers,
            device=args.device,
            channels_last=not args.no_channels_last,
        )
        seconds = time.perf_counter() - start
    report({"images_per_s": args.images / seconds, "seconds": seconds}, vars(args))


if __name__ == "__main__":
    main()
