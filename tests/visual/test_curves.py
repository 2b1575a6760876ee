"""Convergence figures: which numbers each panel draws, for a run that validated every epoch, some epochs or
never, and for a sweep."""

import math

import pandas as pd
from PIL import Image

from captioning.visual.curves import curves_figure, save_figure, sweep_figure

NAN = math.nan


def _lines(axis) -> dict[str, tuple[list[float], list[float]]]:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in axis.get_lines()}


def _texts(axis) -> list[str]:
    return [text.get_text() for text in axis.texts]


def test_a_run_figure_draws_the_losses_and_the_score_of_the_epochs_that_have_them():
    # validation every other epoch: epochs 2 and 4 only
    table = pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4],
            "step": [10, 20, 30, 40],
            "train_loss": [4.0, 3.0, 2.5, 2.25],
            "val_loss": [NAN, 3.5, NAN, 3.25],
            "val_bleu4": [NAN, 0.05, NAN, 0.08],
            "val_cider": [NAN, 0.2, NAN, 0.3],
            "lr": [1e-3] * 4,
        }
    )
    loss_axis, score_axis = curves_figure(table, "val_bleu4").axes
    assert _lines(loss_axis) == {"train": ([1, 2, 3, 4], [4.0, 3.0, 2.5, 2.25]), "val": ([2, 4], [3.5, 3.25])}
    assert _lines(score_axis) == {"val BLEU-4": ([2, 4], [0.05, 0.08])}
    assert score_axis.get_title() == "Validation BLEU-4"

    cider_axis = curves_figure(table, "val_cider").axes[1]
    assert _lines(cider_axis) == {"val CIDEr-D": ([2, 4], [0.2, 0.3])}


def test_a_run_that_never_validated_says_so_instead_of_an_empty_panel():
    table = pd.DataFrame({"epoch": [1, 2], "train_loss": [3.0, 2.0], "val_loss": [NAN, NAN], "val_bleu4": [NAN, NAN]})
    loss_axis, score_axis = curves_figure(table, "val_bleu4").axes
    assert _lines(loss_axis) == {"train": ([1, 2], [3.0, 2.0])}
    assert _lines(score_axis) == {} and _texts(score_axis) == ["no validation in this run"]
    empty = curves_figure(pd.DataFrame(columns=["epoch", "train_loss", "val_loss", "val_bleu4"]), "val_bleu4")
    assert all(_lines(axis) == {} for axis in empty.axes)


def test_a_sweep_figure_draws_one_val_curve_per_job_under_its_label():
    first = pd.DataFrame({"epoch": [1, 2], "val_loss": [3.0, 2.5], "val_bleu4": [0.1, 0.2]})
    second = pd.DataFrame({"epoch": [1, 2], "val_loss": [2.9, NAN], "val_bleu4": [0.15, NAN]})
    loss_axis, score_axis = sweep_figure(
        [("0: hidden_dim=8", first, "val_bleu4"), ("1: hidden_dim=16", second, "val_bleu4")]
    ).axes
    assert _lines(loss_axis) == {"0: hidden_dim=8": ([1, 2], [3.0, 2.5]), "1: hidden_dim=16": ([1], [2.9])}
    assert _lines(score_axis) == {"0: hidden_dim=8": ([1, 2], [0.1, 0.2]), "1: hidden_dim=16": ([1], [0.15])}
    assert [text.get_text() for text in score_axis.get_legend().get_texts()] == ["0: hidden_dim=8", "1: hidden_dim=16"]


def test_a_figure_is_written_as_a_png_of_its_size(tmp_path):
    table = pd.DataFrame({"epoch": [1], "train_loss": [3.0], "val_loss": [3.1], "val_bleu4": [0.1]})
    path = save_figure(curves_figure(table, "val_bleu4"), tmp_path / "run" / "curves.png")
    assert path == tmp_path / "run" / "curves.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1000, 400)  # 10 x 4 inches at 100 dpi
    assert [p.name for p in path.parent.iterdir()] == ["curves.png"]  # no partial file left behind
