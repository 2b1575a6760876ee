"""What a run leaves for comparing it with others: TensorBoard's HPARAMS session, curves.png beside
history.csv, and the optional loggers (csv, W&B offline, MLflow in a local database)."""

import math
import struct
from pathlib import Path

import pandas as pd
import pytest
import wandb
from hydra.core.utils import JobReturn, JobStatus
from mlflow import MlflowClient
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import api_pb2, metadata
from wandb.proto import wandb_internal_pb2

from captioning.training.hparams import flat_hyperparameters
from captioning.training.logger_runs import FinishWandbRun
from tests.helpers.runs import compose_train
from train import train

TINY = ("trainer.limit_train_batches=2", "trainer.limit_val_batches=1")


def test_nested_hyperparameters_are_flattened_to_values_tensorboard_takes():
    nested = {"seed": 1, "model": {"hidden_dim": 512, "scheduler": None, "optimizer": {"lr": 1e-3}}, "grid": [7, 7]}
    assert flat_hyperparameters(nested) == {
        "seed": 1,
        "model.hidden_dim": 512,
        "model.scheduler": "null",
        "model.optimizer.lr": 1e-3,
        "grid": "[7, 7]",
    }


def _hparams_events(folder: Path) -> list:
    """Every summary value of the hparams plugin in the event files of `folder`, in the order written."""
    values = []
    for events in sorted(folder.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(events)).Load():
            values += [value for value in event.summary.value if value.tag.startswith("_hparams_/")]
    return values


@pytest.mark.slow  # trains
def test_a_run_logs_one_hparams_session_of_its_values_and_metrics_and_draws_its_curves(tmp_path):
    result = train(
        compose_train(tmp_path, "model.hidden_dim=24", "model.optimizer.lr=3e-4", "trainer.max_epochs=3", *TINY)
    )

    board = tmp_path / "run" / "tensorboard"
    tags = [value.tag for value in _hparams_events(board)]
    assert tags == [metadata.EXPERIMENT_TAG, metadata.SESSION_START_INFO_TAG, metadata.SESSION_END_INFO_TAG]
    events = EventAccumulator(str(board), size_guidance={"scalars": 0})
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    session = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG]).hparams
    assert session["model.hidden_dim"].number_value == 24 and session["model.optimizer.lr"].number_value == 3e-4
    assert session["data.batch_size"].number_value == 4 and session["trainer.max_epochs"].number_value == 3
    assert session["model.optimizer.name"].string_value == "torch.optim.Adam"
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    metrics = [info.name.tag for info in experiment.metric_infos]
    assert {"val/loss_best", "val/bleu4", "train/loss_epoch"} <= set(metrics)
    assert set(metrics) <= set(events.Tags()["scalars"])  # every column of the HPARAMS tab has its values
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_SUCCESS

    history = pd.read_csv(result["history"])  # LossHistory's own record of the epochs
    best = [event.value for event in events.Scalars("val/loss_best")]
    assert best == pytest.approx(history["val_loss"].cummin().tolist())  # the lowest val loss so far, every epoch
    with Image.open(Path(result["history"]).with_name("curves.png")) as image:
        assert image.format == "PNG" and image.size == (1000, 400)


def _wandb_records(run_file: Path) -> list:
    """The records of an offline W&B run file (LevelDB's log format, blocks of 32 KiB, after a 7-byte header)."""
    data, position, pieces, records = run_file.read_bytes(), 7, b"", []
    while position + 7 <= len(data):
        if 32768 - position % 32768 < 7:  # a block's tail too short for a header is padding
            position += 32768 - position % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pieces += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            records.append(record)
            pieces = b""
    return records


@pytest.mark.slow  # trains
def test_csv_wandb_and_mlflow_loggers_record_the_run_without_tensorboard_or_a_network(tmp_path, monkeypatch):
    for name, folder in [("WANDB_DIR", "wandb"), ("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache")]:
        monkeypatch.setenv(name, str(tmp_path / "wandb_home" / folder))
    monkeypatch.setenv("WANDB_MODE", "offline")  # as logger.wandb.offline=true sets it, restored after the test
    monkeypatch.setenv("WANDB_SILENT", "true")
    names = ["logger.wandb.name=tiny-run", "logger.mlflow.run_name=tiny-run"]
    train(compose_train(tmp_path, "logger=[csv,wandb,mlflow]", *names, "model.hidden_dim=24", *TINY))
    FinishWandbRun().on_job_end(None, JobReturn(status=JobStatus.COMPLETED))  # as Hydra calls it after the job
    assert wandb.run is None
    wandb.teardown()  # W&B's service writes the run file after finish() returns: wait for it to stop

    run = tmp_path / "run"
    assert not (run / "tensorboard").exists()
    metrics = pd.read_csv(run / "csv" / "metrics.csv")
    assert metrics["val/loss"].notna().sum() == 1 and math.isfinite(metrics["val/loss"].dropna().iloc[0])
    assert "model.hidden_dim: 24" in (run / "csv" / "hparams.yaml").read_text().splitlines()

    [run_file] = (run / "wandb").glob("offline-run-*/run-*.wandb")
    records = {}
    for record in _wandb_records(run_file):
        records.setdefault(record.WhichOneof("record_type"), []).append(record)
    [started] = records["run"]
    assert (started.run.display_name, started.run.notes, started.run.project) == ("tiny-run", str(run), "captioning")
    config = {item.key: item.value_json for record in records["config"] for item in record.config.update}
    assert config["model.hidden_dim"] == "24"
    logged = {item.key or "/".join(item.nested_key) for record in records["history"] for item in record.history.item}
    assert {"val/loss", "val/loss_best", "train/loss_epoch"} <= logged
    assert [record.exit.exit_code for record in records["exit"]] == [0]

    client = MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")  # beside the run folders in outputs/
    [mlflow_run] = client.search_runs([client.get_experiment_by_name("captioning").experiment_id])
    assert mlflow_run.info.run_name == "tiny-run" and mlflow_run.data.tags["run_folder"] == str(run)
    assert mlflow_run.data.params["model.hidden_dim"] == "24"
    assert {"val/loss", "val/loss_best", "val/bleu4"} <= set(mlflow_run.data.metrics)
