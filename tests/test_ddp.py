"""trainer=ddp: two CPU processes (gloo) share the work: disjoint data, identical weights, one cache build."""

import json
import os
import subprocess
from collections import Counter

import pytest

from captioning.vocabulary import Vocabulary
from tests.helpers.runs import PROJECT, train_command

pytestmark = pytest.mark.slow  # trains, evaluates or starts processes


def two_process_run(tmp_path, *overrides: str) -> list[dict]:
    """A tiny training with trainer=ddp on 2 CPU processes; what each process recorded (RecordRankData)."""
    command = train_command(
        tmp_path,
        tmp_path / "run",
        "~logger",
        *overrides,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "+callbacks.probe._target_=tests.helpers.ddp_probe.RecordRankData",
        f"+callbacks.probe.directory={tmp_path / 'probe'}",
    )
    environment = {**os.environ, "PYTHONPATH": str(PROJECT)}
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return [json.loads((tmp_path / "probe" / f"rank{rank}.json").read_text()) for rank in (0, 1)]


def test_two_processes_see_disjoint_data_and_end_with_the_same_weights(tmp_path):
    ranks = two_process_run(tmp_path)
    assert [rank["world_size"] for rank in ranks] == [2, 2]
    # Together the two processes saw every training caption exactly once: no sample twice, none lost.
    dataset = json.loads((tmp_path / "data" / "shapes_tiny" / "dataset_shapes.json").read_text())["images"]
    train_captions = [s["raw"] for image in dataset if image["split"] == "train" for s in image["sentences"]]
    vocabulary = Vocabulary.build(train_captions, min_frequency=1)
    expected = Counter(tuple(vocabulary.encode(caption, max_length=20)) for caption in train_captions)
    seen = Counter(
        tuple(token for token in sample if token != vocabulary.pad_id)
        for r in ranks
        for s in [r]
        for sample in s["samples"]
    )
    assert seen == expected
    assert len(ranks[0]["samples"]) == len(ranks[1]["samples"]) == len(train_captions) // 2
    # Gradients are averaged across processes, so both end with the same weights.
    assert ranks[0]["weights_sum"] == ranks[1]["weights_sum"] and ranks[0]["weights_norm"] == ranks[1]["weights_norm"]
    # The feature cache was built once, by rank 0, and the other process waited for it.
    assert len(list((tmp_path / "cache" / "features").glob("*.npy"))) == 1
    logs = sorted((tmp_path / "run").glob("*.log"))  # train.log (rank 0), train_ddp_process_1.log (rank 1)
    assert len(logs) == 2
    assert sum(log.read_text().count("Feature cache written") for log in logs) == 1


def test_self_critical_training_runs_under_ddp_with_the_same_document_frequencies_on_both_processes(tiny_run, tmp_path):
    ranks = two_process_run(tmp_path, "experiment=scst", f"init_from={tiny_run['last_checkpoint']}")
    assert ranks[0]["reward_table"] is not None and ranks[0]["reward_table"] == ranks[1]["reward_table"]
    assert len(ranks[0]["samples"]) == len(ranks[1]["samples"]) == 4  # 8 training images, one each per rank
    first_images = {tuple(map(tuple, image)) for rank in ranks for image in rank["samples"]}
    assert len(first_images) == 8  # disjoint images, with all their references
    assert ranks[0]["weights_sum"] == ranks[1]["weights_sum"] and ranks[0]["weights_norm"] == ranks[1]["weights_norm"]
    assert "val_cider" in (tmp_path / "run" / "history.csv").read_text().splitlines()[0]
