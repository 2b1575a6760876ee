"""The sweep's figure from its job folders: a job without a history is named and left out, and nothing about
the figure fails a sweep whose jobs have all run."""

import logging

import pandas as pd
import yaml
from omegaconf import OmegaConf
from PIL import Image

from captioning.training.history import score_column
from captioning.training.sweep_curves import SweepCurves, sweep_jobs, write_sweep_curves


def _job(sweep, folder, number, overrides, history=None):
    """A job folder as Hydra and train.py leave it: .hydra/hydra.yaml, and history.csv if it trained."""
    hydra_dir = sweep / folder / ".hydra"
    hydra_dir.mkdir(parents=True)
    hydra = {"hydra": {"job": {"num": number, "id": f"x_{number}"}, "overrides": {"task": overrides}}}
    (hydra_dir / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    if history is not None:
        pd.DataFrame(history).to_csv(sweep / folder / "history.csv", index=False)


def _history(val_loss):
    return {"epoch": [1, 2], "train_loss": [3.0, 2.0], "val_loss": val_loss, "val_bleu4": [0.1, 0.2]}


def test_the_score_of_a_self_critical_history_is_cider_else_bleu4():
    plain = pd.DataFrame(columns=["epoch", "step", "train_loss", "val_loss", "val_bleu4", "val_cider", "lr"])
    scst = pd.DataFrame(columns=[*plain.columns[:-1], "reward", "baseline", "greedy_reward", "entropy", "lr"])
    assert score_column(plain) == "val_bleu4" and score_column(scst) == "val_cider"


def test_jobs_are_read_in_job_order_with_their_overrides(tmp_path):
    _job(tmp_path, "10_hidden_dim-32", 10, ["model.hidden_dim=32"])
    _job(tmp_path, "9_hidden_dim-16", 9, ["model.hidden_dim=16"])
    _job(tmp_path, "seed-${x}", 0, ["seed=${x}"])  # as typed: an interpolation is not resolved
    assert sweep_jobs(tmp_path) == [
        (0, ["seed=${x}"], tmp_path / "seed-${x}"),
        (9, ["model.hidden_dim=16"], tmp_path / "9_hidden_dim-16"),
        (10, ["model.hidden_dim=32"], tmp_path / "10_hidden_dim-32"),
    ]


def test_a_job_without_a_history_is_named_and_left_out(tmp_path, caplog):
    _job(tmp_path, "0_lr-0.1", 0, ["debug=default", "model.optimizer.lr=0.1"], _history([3.0, 2.5]))
    _job(tmp_path, "1_lr-0.2", 1, ["debug=default", "model.optimizer.lr=0.2"])  # failed before its first epoch
    _job(tmp_path, "2_lr-0.3", 2, ["debug=default", "model.optimizer.lr=0.3"], _history([2.9, 2.4]))
    with caplog.at_level(logging.WARNING):
        written = write_sweep_curves(tmp_path, exclude_keys=["debug"])
    assert written == tmp_path / "curves.png"
    with Image.open(written) as image:
        assert image.size == (1100, 450)
    assert [record.getMessage() for record in caplog.records] == [
        f"Sweep job 1 wrote no {tmp_path / '1_lr-0.2' / 'history.csv'}: left out of the sweep's curves"
    ]


def test_a_sweep_without_histories_or_with_an_unreadable_one_still_ends_well(tmp_path, caplog):
    _job(tmp_path, "0", 0, ["model.hidden_dim=8"])
    assert write_sweep_curves(tmp_path, exclude_keys=[]) is None
    assert not (tmp_path / "curves.png").exists()

    (tmp_path / "0" / "history.csv").write_bytes(b"\xff\xfe not a table")
    config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(tmp_path)}, "job": {"config": {"override_dirname": {"exclude_keys": []}}}}}
    )
    with caplog.at_level(logging.WARNING):
        SweepCurves().on_multirun_end(config)  # a warning, not an exception that would fail the sweep
    assert caplog.records[-1].getMessage().startswith(f"Could not draw the curves of the sweep {tmp_path}:")
