"""Sweep jobs named after their overrides: folders that tell runs apart and paste into ckpt_path= unquoted,
and legend labels that name only what differs between the jobs."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from captioning.sweep_names import job_folder
from captioning.training.sweep_curves import distinct_labels
from tests.helpers.runs import PROJECT


@pytest.fixture(scope="module")
def excluded() -> list[str]:
    """The keys that conf/hydra/default.yaml leaves out of job names."""
    with initialize_config_dir(str(PROJECT / "conf"), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
    return list(cfg.hydra.job.config.override_dirname.exclude_keys)


def test_a_job_is_named_after_its_number_and_the_overrides_that_describe_it(excluded):
    # what the basic sweeper hands job 3 of: python train.py -m data=flickr30k data.root=/d model.hidden_dim=256,512
    # model.optimizer.lr=1e-4,3e-4 paths.cache_dir=/c ~logger
    overrides = [
        "data=flickr30k",
        "data.root=/datasets/flickr30k",
        "model.hidden_dim=512",
        "model.optimizer.lr=3e-4",
        "paths.cache_dir=/scratch/cache",
        "~logger",
    ]
    assert job_folder(3, overrides, excluded) == "3_data-flickr30k_hidden_dim-512_lr-3e-4"


def test_keys_whose_last_part_repeats_keep_their_full_name_and_unsafe_characters_are_replaced():
    overrides = ["model.dropout=0.1", "data.dropout=0.2", "trainer.precision='bf16 mixed'"]
    assert job_folder(0, overrides) == "0_model.dropout-0.1_data.dropout-0.2_precision-bf16_mixed"
    assert job_folder(0, ["model/optimizer=adamw", "+trainer.foo=a/b"]) == "0_optimizer-adamw_foo-a_b"


def test_a_job_without_describing_overrides_or_with_a_long_description_is_its_number(excluded):
    assert job_folder(2, ["paths.data_dir=/data", "debug=default"], excluded) == "2"
    hparams_column = "+callbacks.hparams.hyperparameters.data.max_caption_length=${data.max_caption_length}"
    assert job_folder(2, ["data.max_caption_length=16", hparams_column], excluded) == "2_max_caption_length-16"
    assert job_folder(7, [f"model.hidden_dim={'9' * 70}"], excluded) == "7"


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.hidden_dim=512"],
        ["model.optimizer.lr=1e-4", "seed=-1"],
        ["model/optimizer=adamw", "trainer.precision=16-mixed"],
    ],
)
def test_a_job_folder_goes_unquoted_into_a_command_line_path(overrides):
    folder = job_folder(1, overrides)
    assert folder != "1"
    path = f"outputs/2025-01-01_12-00-00_abc123_sweep/{folder}/checkpoints/best.ckpt"
    [override] = OverridesParser.create().parse_overrides([f"init_from={path}"])
    assert override.value() == path and not override.is_sweep_override()


def test_the_legend_names_what_differs_between_the_jobs(excluded):
    jobs = [
        ["debug=default", "model.hidden_dim=8", "model.dropout=0.1", "trainer.max_epochs=2"],
        ["debug=default", "model.hidden_dim=16", "model.dropout=0.1", "trainer.max_epochs=2"],
        ["debug=default", "model.hidden_dim=16", "model.dropout=0.3", "trainer.max_epochs=2"],
    ]
    assert distinct_labels(jobs, excluded) == [
        "hidden_dim=8, dropout=0.1",
        "hidden_dim=16, dropout=0.1",
        "hidden_dim=16, dropout=0.3",
    ]
    # a single job, or jobs alike: every describing override
    assert distinct_labels(jobs[:1], excluded) == ["hidden_dim=8, dropout=0.1, max_epochs=2"]
