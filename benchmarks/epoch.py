"""End-to-end training epoch on a Flickr30k-sized feature cache: time and resident memory.

python benchmarks/epoch.py [--device cuda] --images 31783 --batch-size 32 --workers 2 [--max-batches N]

Builds (once) a synthetic float16 cache of --images x 49 x 2048 (6.4 GB for Flickr30k) at --cache, then
trains the real LightningModule for one epoch over (image, caption) pairs read from it by DataLoader
workers, as train.py does: no ResNet forward at all. Resident memory (this process and its workers) is
sampled twice a second. With --max-batches the epoch is cut short and its full length extrapolated.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file (python benchmarks/x.py): make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import threading
import time

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from torch.utils.data import DataLoader

from benchmarks.common import report, resident_memory_gb
from captioning.data.datasets import CachedFeatures, CaptionPairs, CollatePairs
from captioning.model.encoder import ResNet50Encoder
from captioning.model.lightning_module import CaptioningModule
from captioning.vocabulary import SPECIAL_TOKENS


def synthetic_cache(path: Path, images: int, regions: int = 49, feature_dim: int = 2048) -> float:
    """Write a random float16 cache of `images` rows unless it exists; returns the seconds it took."""
    if path.is_file() and np.load(path, mmap_mode="r").shape == (images, regions, feature_dim):
        return 0.0
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(0)
    partial = path.with_suffix(".partial.npy")
    cache = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=(images, regions, feature_dim))
    # 1,024 random rows written over and over: the epoch's cost is reading them, not what they hold.
    block = (torch.randn(1024, regions, feature_dim, generator=generator) * 30).half().numpy()
    for first in range(0, images, len(block)):
        rows = min(len(block), images - first)
        cache[first : first + rows] = block[:rows]
    cache.flush()
    del cache
    partial.rename(path)
    return time.perf_counter() - start


class PeakMemory(threading.Thread):
    """Samples the resident memory of this process and its children until stopped; keeps the peak."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_gb = 0.0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak_gb = max(self.peak_gb, resident_memory_gb())
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=31783)
    parser.add_argument("--captions-per-image", type=int, default=5)
    parser.add_argument("--vocab-size", type=int, default=7500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (Lightning's accelerator)")
    parser.add_argument("--precision", default=None, help="default: bf16-mixed on cuda, else 32-true")
    parser.add_argument("--max-batches", type=int, default=0, help="0: the whole epoch")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/captioning-benchmark-cache.npy"))
    args = parser.parse_args()

    cache_seconds = synthetic_cache(args.cache, args.images)
    generator = torch.Generator().manual_seed(0)
    pairs = args.images * args.captions_per_image
    lengths = torch.randint(8, 21, (pairs,), generator=generator)  # Flickr30k captions: mostly 8-20 words
    captions = [[1, *torch.randint(4, args.vocab_size, (int(n),), generator=generator).tolist(), 2] for n in lengths]
    image_indices = [pair // args.captions_per_image for pair in range(pairs)]
    dataset = CaptionPairs(image_indices, captions, CachedFeatures(args.cache))
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        collate_fn=CollatePairs("features", 0),
        pin_memory=args.device == "cuda",
    )
    vocabulary = [*SPECIAL_TOKENS, *(f"w{i}" for i in range(args.vocab_size - len(SPECIAL_TOKENS)))]
    module = CaptioningModule(ResNet50Encoder(weights=None), vocabulary)
    batches = args.max_batches or len(loader)
    precision = args.precision or ("bf16-mixed" if args.device == "cuda" else "32-true")
    trainer = L.Trainer(
        accelerator="gpu" if args.device == "cuda" else args.device,
        devices=1,
        precision=precision,
        max_epochs=1,
        limit_train_batches=batches,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[TQDMProgressBar(refresh_rate=10)],  # as conf/callbacks/default.yaml
    )

    memory = PeakMemory()
    memory.start()
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    seconds = time.perf_counter() - start
    memory.running = False
    memory.join()
    report(
        {
            "epoch_seconds": seconds * len(loader) / batches,
            "measured_seconds": seconds,
            "measured_batches": batches,
            "epoch_batches": len(loader),
            "extrapolated": batches < len(loader),
            "captions_per_s": batches * args.batch_size / seconds,
            "precision": precision,
            "peak_resident_gb": memory.peak_gb,
            "cache_gb": args.cache.stat().st_size / 1e9,
            "cache_build_seconds": cache_seconds,
        },
        {**vars(args), "cache": str(args.cache)},
    )


if __name__ == "__main__":
    main()
