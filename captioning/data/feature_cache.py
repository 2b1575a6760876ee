"""Cache of encoder features: each image is encoded once into a memory-mapped float16 file.

The file name is a hash of everything that determines the features (the image list, how images are read,
the encoder's arch, weights and grid, and the image transform), so a change of any of them selects another
file; the cache it replaces is then deleted. Images are known by name, size and a hash of sampled bytes, not
by modification time, so a copied dataset keeps its cache. A file only gets its final name once it is
complete, so an interrupted build never leaves a cache that looks complete. Its size is checked against the
free space before a byte is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from captioning.data.images import IMAGE_LOADING, ImageFolderDataset
from captioning.errors import DiskSpaceError

log = logging.getLogger(__name__)

SAMPLE_BLOCK = 4096  # bytes of each image hashed at its start, middle and end


def image_fingerprint(path: Path) -> str:
    """`size:hash` of an image file, the hash over three 4 KiB blocks: its start, middle and end (the whole of
    a file under 12 KiB). Cheap (12 KiB of a 130 KB photo), the same for a copy, yet it changes with a
    rewritten header (an EXIF orientation turned in place) and with pixels re-encoded into as many bytes."""
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            for offset in sorted({0, max(size // 2 - SAMPLE_BLOCK // 2, 0), max(size - SAMPLE_BLOCK, 0)}):
                digest.update(os.pread(file.fileno(), SAMPLE_BLOCK, offset))
    except OSError as error:  # not readable (permissions): the build will find it unreadable and skip it
        return f"unreadable: {error.strerror}"
    return f"{size}:{digest.hexdigest()}"


def image_fingerprints(paths: list[Path]) -> list[str]:
    """`image_fingerprint` of every path, with a progress bar (Flickr30k: 2 s, 6-8 s from a cold disk)."""
    return [image_fingerprint(path) for path in tqdm(paths, desc="Fingerprinting images", unit="image")]


def image_list_digest(images: list[str]) -> str:
    """A hash of the image names alone, in order: caches of the same list replace each other."""
    return hashlib.sha256("\0".join(images).encode("utf-8")).hexdigest()[:24]


def feature_cache_path(
    cache_dir: str | Path, images: list[str], encoder_identity: str, transform_description: str
) -> Path:
    """Where the features of `images` (in this order, each `name:fingerprint`) under this encoder and transform
    are cached."""
    digest = hashlib.sha256()
    for part in (IMAGE_LOADING, encoder_identity, transform_description, *images):
        digest.update(part.encode("utf-8") + b"\0")
    return Path(cache_dir) / f"features-{digest.hexdigest()[:24]}.npy"


def unreadable_images(path: Path) -> list[int]:
    """Positions of the images that could not be read when the cache at `path` was built."""
    metadata_path = path.with_suffix(".json")
    if not metadata_path.is_file():
        return []
    return json.loads(metadata_path.read_text()).get("unreadable", [])


def read_cache_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """The shape, dtype and data offset that the .npy header of the cache at `path` gives (ValueError if none)."""
    with open(path, "rb") as file:
        version = np.lib.format.read_magic(file)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            raise ValueError(f"unknown .npy version {version}")
        shape, _, dtype = read_header[version](file)
        return shape, dtype, file.tell()


def cache_damage(path: Path, num_images: int) -> str | None:
    """Why the cache at `path` cannot serve `num_images` images, or None if it can: what is cheap to check, its
    header, its exact size (a truncated or padded file), and its metadata (complete before the features got
    their final name)."""
    try:
        shape, dtype, offset = read_cache_header(path)
    except (OSError, ValueError, SyntaxError) as error:  # SyntaxError: a header that is not a Python literal
        return f"its header cannot be read ({error})"
    if len(shape) != 3 or dtype != np.float16 or shape[0] != num_images:
        return f"its header gives {dtype} rows of shape {shape}, not float16 rows of {num_images} images"
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        damage = "truncated" if size < expected else "padded"
        return f"it is {size:,} bytes long, not the {expected:,} its header gives: {damage}"
    try:
        metadata = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return f"its metadata {path.with_suffix('.json').name} is missing or unreadable"
    if metadata.get("num_images") != num_images:
        return f"its metadata counts {metadata.get('num_images')} images, not {num_images}"
    return None


def cache_file_size(num_images: int, regions: int, feature_dim: int) -> int:
    """Bytes of the float16 cache of `num_images` x `regions` x `feature_dim`, its .npy header included."""
    header = io.BytesIO()
    shape = (num_images, regions, feature_dim)
    np.lib.format.write_array_header_1_0(header, {"descr": "<f2", "fortran_order": False, "shape": shape})
    return len(header.getvalue()) + num_images * regions * feature_dim * np.dtype(np.float16).itemsize


def _readable_size(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def check_cache_fits(folder: Path, num_images: int, regions: int, feature_dim: int) -> None:
    """Log the size the cache will take in `folder` and the free space there; raise DiskSpaceError, before a
    byte is written, if it cannot fit (a disk filled part-way would fail hours into the build)."""
    needed = cache_file_size(num_images, regions, feature_dim)
    free = shutil.disk_usage(folder).free
    log.info(
        f"Feature cache: {num_images} images x {regions} regions x {feature_dim} features x 2 bytes (float16) = "
        f"{_readable_size(needed)} in {folder}, where {_readable_size(free)} are free"
    )
    if needed <= free:
        return
    remedies = ["move it to a larger disk with paths.cache_dir=/scratch/cache"]
    if regions > 49:
        remedies.append(f"shrink it with model.encoder.grid=7 (49 regions instead of {regions})")
    remedies.append("do without it with data.cache_features=false (images encoded at every step: slower epochs)")
    raise DiskSpaceError(
        f"The feature cache needs {_readable_size(needed)} ({num_images} images x {regions} regions x {feature_dim} "
        f"features x 2 bytes) but {folder} has only {_readable_size(free)} free, so nothing was written: "
        f"{', '.join(remedies[:-1])}, or {remedies[-1]}."
    )


@contextlib.contextmanager
def _sigterm_stops_the_build() -> Iterator[None]:
    """SIGTERM (docker stop, SLURM) raises Lightning's SIGTERMException inside the block, so that the partial file
    is removed and the entry point exits 143 as it does for a run stopped in training; before training starts
    Lightning's own handler is not installed, and the default one would leave the partial file behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        log.warning("Stopped by SIGTERM while building the feature cache: nothing is kept, the next run builds it")
        raise SIGTERMException()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def build_feature_cache(
    path: Path,
    encoder: torch.nn.Module,
    dataset: ImageFolderDataset,
    metadata: dict,
    batch_size: int = 32,
    num_workers: int = 2,
    device: str = "cpu",
    channels_last: bool = True,
) -> None:
    """Encode every image of `dataset` into `path`, atomically, with a progress bar.

    The positions of the images that could not be read are saved in the metadata, as `unreadable`.
    Channels-last memory layout is what the CPU and GPU convolution kernels run fastest on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.partial-{os.getpid()}.npy")
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    home = next(encoder.parameters()).device  # the model shares this encoder: it goes back there afterwards
    encoder.to(device).to(memory_format=memory_format)
    features = None
    written = 0
    unreadable: list[int] = []
    try:
        # Iterating a DataLoader draws from the global generator: fork it, so that a run which builds the cache
        # trains exactly like one which reuses it.
        with _sigterm_stops_the_build(), torch.random.fork_rng(devices=[]), torch.inference_mode():
            for images, readable in tqdm(loader, desc=f"Encoding {len(dataset)} images", unit="batch"):
                unreadable += [written + position for position in (~readable).nonzero().flatten().tolist()]
                images = images.to(device, memory_format=memory_format)
                batch = encoder(images).to(torch.float16).cpu().numpy()  # (B, regions, 2048)
                if features is None:
                    shape = (len(dataset), *batch.shape[1:])
                    features = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=shape)
                features[written : written + len(batch)] = batch
                written += len(batch)
        features.flush()
        del features
        # The metadata first, then the features: once the features have their name, both are complete. Two
        # runs building the same cache at once (a sweep) each write their own partial files, then replace.
        partial_metadata = partial.with_suffix(".json")
        metadata = {**metadata, "image_loading": IMAGE_LOADING, "unreadable": unreadable}
        partial_metadata.write_text(json.dumps(metadata, indent=1))
        os.replace(partial_metadata, path.with_suffix(".json"))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
        encoder.to(home)
    log.info(f"Feature cache written: {path} ({written} images, {len(unreadable)} unreadable)")


def remove_replaced_caches(path: Path) -> None:
    """Delete the caches that the one at `path` replaces, and log the space freed: those of the same dataset
    root, image names, encoder and transform (so an image, or how images are read, changed since). Caches of
    other image lists, encoders or image sizes stay: a later run may want them."""
    ours = json.loads(path.with_suffix(".json").read_text())
    for other in sorted(path.parent.glob("features-*.json")):
        if other.stem == path.stem or ".partial-" in other.name:
            continue
        try:
            theirs = json.loads(other.read_text())
        except (OSError, ValueError):
            continue
        # Caches written before image names were recorded are recognised by their number of images.
        same = ("dataset_root", "encoder", "transform", "image_names" if "image_names" in theirs else "num_images")
        if any(theirs.get(key) != ours.get(key) for key in same):
            continue
        features = other.with_suffix(".npy")
        size = features.stat().st_size if features.is_file() else 0
        features.unlink(missing_ok=True)
        other.unlink(missing_ok=True)
        log.info(f"Removed {features}, the feature cache this one replaces: {size / 1e9:.2f} GB freed")
