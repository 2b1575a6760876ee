import json
import multiprocessing
import os
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from PIL import Image

from captioning.data.shapes import ANNOTATION_FILE, generate_shapes_dataset
from captioning.errors import DatasetFormatError

TINY = dict(num_images=12, val_images=2, test_images=2, image_size=64)


def generate_after_barrier(roots: list[Path], barrier: Barrier) -> None:
    """One rank of a launcher: generates the same dataset as the other ranks into each of `roots`, starting
    each one together with them."""
    for root in roots:
        barrier.wait(timeout=60)
        try:
            generate_shapes_dataset(root, **TINY)
        except BaseException:
            barrier.abort()  # the other rank stops at its next round instead of waiting for this one
            raise


def dataset_files(root: Path) -> list[str]:
    """Every file under `root`, hidden ones included, relative to it."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def test_two_ranks_generating_the_same_dataset_at_once_leave_it_complete(tmp_path):
    alone = tmp_path / "alone"
    generate_shapes_dataset(alone, **TINY)
    expected_files = [ANNOTATION_FILE] + [f"images/shapes_{index:05d}.png" for index in range(12)]
    assert dataset_files(alone) == expected_files
    # Fifty rounds, each into a fresh folder, so that the two ranks' writes interleave in many ways.
    roots = [tmp_path / f"shared-{attempt}" for attempt in range(50)]
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as srun or torchrun start them
    barrier = context.Barrier(2)
    ranks = [context.Process(target=generate_after_barrier, args=(roots, barrier)) for _ in range(2)]
    for rank in ranks:
        rank.start()
    for rank in ranks:
        rank.join(timeout=120)
    assert [rank.exitcode for rank in ranks] == [0, 0]  # neither rank failed (a partial file taken from it)

    for root in roots:
        assert dataset_files(root) == expected_files  # and no temporary file of either rank is left behind
        dataset = json.loads((root / ANNOTATION_FILE).read_text())
        assert len(dataset["images"]) == 12 and dataset["generator"]["num_images"] == 12
        for name in expected_files:  # the same bytes as a rank that generates alone
            assert (root / name).read_bytes() == (alone / name).read_bytes(), f"{root.name}/{name}"
        for entry in dataset["images"]:
            with Image.open(root / "images" / entry["filename"]) as image:
                image.verify()  # a truncated or interleaved PNG fails its checksums here


def test_generating_the_same_dataset_again_rewrites_nothing(tmp_path):
    generate_shapes_dataset(tmp_path, **TINY)
    for name in dataset_files(tmp_path):
        os.utime(tmp_path / name, ns=(10**18, 10**18))  # a time no rewrite can give, however coarse the clock

    def identities() -> dict[str, tuple[int, int]]:
        return {
            name: ((tmp_path / name).stat().st_ino, (tmp_path / name).stat().st_mtime_ns)
            for name in dataset_files(tmp_path)
        }

    written = identities()
    generate_shapes_dataset(tmp_path, **TINY)
    assert identities() == written


def test_the_built_in_dataset_is_never_generated_among_a_users_files(tmp_path):
    users = tmp_path / "flickr30k"
    (users / "flickr30k_images").mkdir(parents=True)
    (users / "flickr30k_images" / "results.csv").write_text("image_name| comment_number| comment\n")
    Image.new("RGB", (8, 8)).save(users / "flickr30k_images" / "1000092795.jpg")
    before = {name: (users / name).read_bytes() for name in dataset_files(users)}
    with pytest.raises(DatasetFormatError, match=r"not generated into .*flickr30k: it holds other files \(flickr30k"):
        generate_shapes_dataset(users, **TINY)
    assert {name: (users / name).read_bytes() for name in dataset_files(users)} == before  # nothing written
    assert sorted(path.name for path in users.iterdir()) == ["flickr30k_images"]


def test_a_generation_cut_short_is_completed_and_an_older_one_regenerated(tmp_path):
    generate_shapes_dataset(tmp_path, **TINY)
    (tmp_path / ANNOTATION_FILE).unlink()  # killed before its last write: images only
    (tmp_path / "images" / "shapes_00011.png").unlink()
    generate_shapes_dataset(tmp_path, **TINY)
    assert len(dataset_files(tmp_path)) == 13
    generate_shapes_dataset(tmp_path, **{**TINY, "seed": 1})  # other settings: its own files are replaced
    assert json.loads((tmp_path / ANNOTATION_FILE).read_text())["generator"]["seed"] == 1
