"""Evaluate a checkpoint on a split: losses, COCO metrics, grounding and attention figures, predictions, samples."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import matplotlib.image
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger

from captioning.data.images import load_image
from captioning.data.shapes import load_object_boxes
from captioning.errors import DatasetFormatError
from captioning.evaluation.attention_maps import attention_statistics
from captioning.evaluation.decoding import (
    caption_loss,
    decode_images,
    empty_share,
    mean_length,
    repeated_trigram_share,
)
from captioning.evaluation.grounding import grounding_score
from captioning.evaluation.metrics import caption_metrics
from captioning.evaluation.report import metrics_table, samples_markdown, write_json
from captioning.model.checkpoint import checkpoint_data_config, load_captioner, read_checkpoint
from captioning.visual.attention import save_attention_figure

log = logging.getLogger(__name__)

EVALUATION_SPLITS = ("test", "val")  # the held-out splits, the default first


@dataclass
class EvaluationSettings:
    """What an evaluation scores and writes: the `eval` config group, shared by evaluate.py and train.py."""

    split: str = "test"  # val | test
    beam_size: int = 3
    length_penalty: float = 0.5  # beam search ranks by log-probability / length ** this (GNMT's alpha); see README
    loss_samples: int = 512  # <split>_loss is the mean over this many captions drawn with `seed` (reference: 512)
    num_samples: int = 10  # rows of samples.md
    num_figures: int = 5  # attention figures written (and logged)
    blind: bool = False  # caption each image from another image's features: a model that ignores the image
    seed: int = 0
    allow_unk: bool = False  # let decoding generate <unk>, which it never does by default
    block_trigrams: bool = False  # a caption may not repeat a trigram (ICP's block_trigrams)


def evaluate_checkpoint(
    checkpoint_path: str | Path,
    output_dir: str | Path,
    settings: EvaluationSettings,
    data_overrides: dict | None = None,
    logger: TensorBoardLogger | None = None,
) -> dict:
    """Evaluate the model of `checkpoint_path` as `settings` say, on the data it was trained on (or with
    `data_overrides`), write the reports into `output_dir` and return the metrics. Only the scored split is
    read and, unless the training run's feature cache is there, encoded."""
    split = settings.split
    if split not in EVALUATION_SPLITS:
        raise DatasetFormatError(f"Cannot evaluate on eval.split={split!r}: use val or test.")
    checkpoint = read_checkpoint(checkpoint_path)
    module = load_captioner(checkpoint).to("cuda" if torch.cuda.is_available() else "cpu")
    data_config = {**checkpoint_data_config(checkpoint), **(data_overrides or {})}
    datamodule = instantiate(data_config, encoder=module.encoder, splits=[split], _convert_="all")
    datamodule.vocabulary = module.vocabulary
    if not (datamodule.load_annotations()["split"] == split).any():
        raise DatasetFormatError(f"Cannot evaluate on eval.split={split!r}: it has no image in {datamodule.root}.")
    datamodule.prepare_data()
    datamodule.setup()
    dataset = datamodule.datasets[split]
    if len(dataset) == 0:  # its images are all unreadable
        raise DatasetFormatError(f"Cannot evaluate on eval.split={split!r}: no readable image in {datamodule.root}.")

    pairs = [(image, reference) for image in range(len(dataset)) for reference in range(len(dataset.captions[image]))]
    chosen = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(settings.seed))
    chosen = chosen[: settings.loss_samples]
    blind = settings.blind
    metrics: dict = {
        f"{split}_loss": caption_loss(
            module, dataset, [pairs[index] for index in sorted(chosen.tolist())], blind=blind
        ),
        f"{split}_loss_full": caption_loss(module, dataset, pairs, blind=blind),
    }
    loader = datamodule.eval_dataloader(split)
    predictions = decode_images(
        module,
        loader,
        settings.beam_size,
        datamodule.root,
        blind,
        settings.length_penalty,
        settings.allow_unk,
        settings.block_trigrams,
    )
    metrics.update(
        caption_metrics(
            {prediction["image"]: prediction["generated"] for prediction in predictions},
            {prediction["image"]: prediction["references"] for prediction in predictions},
        )
    )
    boxes = load_object_boxes(datamodule.root)
    if boxes is not None:
        metrics.update(grounding_score(predictions, *boxes))
    metrics.update(attention_statistics(predictions))
    captions = [prediction["generated"] for prediction in predictions]
    metrics["empty_captions"] = empty_share(captions)
    metrics["repeated_trigrams"] = repeated_trigram_share(captions)
    metrics["mean_length"] = mean_length(captions)
    metrics.update(
        {
            "num_images": len(predictions),
            "loss_samples": len(chosen),
            "beam_size": settings.beam_size,
            "length_penalty": settings.length_penalty,
            "allow_unk": settings.allow_unk,
            "block_trigrams": settings.block_trigrams,
            "checkpoint": str(Path(checkpoint_path).resolve()),
            "split": split,
            "blind": blind,
        }
    )

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / "metrics.json", metrics)
    write_json(output_dir / "predictions.json", predictions)
    (output_dir / "samples.md").write_text(samples_markdown(predictions, settings.num_samples))
    figures = [
        save_attention_figure(
            load_image(datamodule.root / prediction["image"]),
            prediction["generated"].split(),
            torch.tensor(prediction["attention"]),
            output_dir / "attention" / f"{Path(prediction['image']).stem}.png",
        )
        for prediction in predictions[: settings.num_figures]
    ]
    if logger is not None:
        # eval_<split>/<metric>: apart from the training curves (val/loss) that share a run's TensorBoard.
        prefix = f"eval_{split}/"
        logger.log_metrics(
            {
                prefix + name.removeprefix(f"{split}_"): value
                for name, value in metrics.items()
                if isinstance(value, float)
            }
        )
        for figure_path in figures:
            image = matplotlib.image.imread(figure_path)
            logger.experiment.add_image(f"{prefix}attention/{figure_path.stem}", image, dataformats="HWC")
        logger.finalize("success")
    log.info(
        f"Evaluation of {checkpoint_path} on {split} ({len(predictions)} images, beam {settings.beam_size}, "
        f"length penalty {settings.length_penalty}):\n" + metrics_table(metrics)
    )
    log.info(f"Reports: {output_dir}/metrics.json, predictions.json, samples.md")
    log.info("Attention figures:\n" + "\n".join(f"  {path}" for path in figures))
    return {"metrics": metrics, "output_dir": str(output_dir), "figures": [str(path) for path in figures]}
