"""Evaluate a checkpoint on a split: losses, COCO metrics, grounding, predictions, samples, attention figures."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger

from captioning.checkpoints import checkpoint_data_config, load_captioner, read_checkpoint
from captioning.data.shapes import load_object_boxes
from captioning.errors import DatasetFormatError
from captioning.evaluation.decoding import caption_loss, decode_images
from captioning.evaluation.grounding import grounding_score
from captioning.evaluation.metrics import caption_metrics
from captioning.evaluation.report import metrics_table, samples_markdown, save_attention_figure, write_json

log = logging.getLogger(__name__)


def evaluate_checkpoint(
    checkpoint_path: str | Path,
    output_dir: str | Path,
    split: str = "test",
    beam_size: int = 3,
    loss_samples: int = 512,
    data_overrides: dict | None = None,
    num_samples: int = 10,
    num_figures: int = 5,
    blind: bool = False,
    seed: int = 0,
    logger: TensorBoardLogger | None = None,
) -> dict:
    """Evaluate the model of `checkpoint_path` on `split` of the data it was trained on (or `data_overrides`),
    write the reports into `output_dir` and return the metrics."""
    checkpoint = read_checkpoint(checkpoint_path)
    module = load_captioner(checkpoint).to("cuda" if torch.cuda.is_available() else "cpu")
    data_config = {**checkpoint_data_config(checkpoint), **(data_overrides or {})}
    datamodule = instantiate(data_config, _convert_="all")
    datamodule.vocabulary = module.vocabulary
    datamodule.prepare_data()
    datamodule.setup()
    if split not in ("val", "test") or len(datamodule.datasets[split]) == 0:
        raise DatasetFormatError(
            f"Cannot evaluate on eval.split={split!r}: use val or test, with images in {datamodule.root}."
        )
    dataset = datamodule.datasets[split]

    pairs = [(image, reference) for image in range(len(dataset)) for reference in range(len(dataset.captions[image]))]
    chosen = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))[:loss_samples]
    metrics: dict = {
        "test_loss": caption_loss(module, dataset, [pairs[index] for index in sorted(chosen.tolist())], blind=blind),
        "test_loss_full": caption_loss(module, dataset, pairs, blind=blind),
    }
    predictions = decode_images(module, datamodule.eval_dataloader(split), beam_size, datamodule.root, blind)
    metrics.update(
        caption_metrics(
            {prediction["image"]: prediction["generated"] for prediction in predictions},
            {prediction["image"]: prediction["references"] for prediction in predictions},
        )
    )
    boxes = load_object_boxes(datamodule.root)
    if boxes is not None:
        metrics.update(grounding_score(predictions, *boxes))
    metrics.update(
        {
            "num_images": len(predictions),
            "loss_samples": len(chosen),
            "beam_size": beam_size,
            "checkpoint": str(Path(checkpoint_path).resolve()),
            "split": split,
            "blind": blind,
        }
    )

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / "metrics.json", metrics)
    write_json(output_dir / "predictions.json", predictions)
    (output_dir / "samples.md").write_text(samples_markdown(predictions, num_samples))
    figures = [
        save_attention_figure(
            datamodule.root / prediction["image"],
            prediction["generated"].split(),
            prediction["attention"],
            output_dir / "attention" / f"{Path(prediction['image']).stem}.png",
        )
        for prediction in predictions[:num_figures]
    ]
    if logger is not None:
        logger.log_metrics({f"{split}/{name}": value for name, value in metrics.items() if isinstance(value, float)})
        for figure_path in figures:
            import matplotlib.image

            logger.experiment.add_image(
                f"{split}/attention/{figure_path.stem}", matplotlib.image.imread(figure_path), dataformats="HWC"
            )
        logger.finalize("success")
    log.info(
        f"Evaluation of {checkpoint_path} on {split} ({len(predictions)} images, beam {beam_size}):\n"
        + metrics_table(metrics)
    )
    log.info(f"Reports: {output_dir}/metrics.json, predictions.json, samples.md")
    log.info("Attention figures:\n" + "\n".join(f"  {path}" for path in figures))
    return {"metrics": metrics, "output_dir": str(output_dir), "figures": [str(path) for path in figures]}
