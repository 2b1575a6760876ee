"""Train the captioner: python train.py [data=flickr30k data.root=DIR] [key=value ...] (see conf/train.yaml)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import lightning as L
import pandas as pd
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from captioning.cli import check_command_line, register_resolvers, run_entry_point
from captioning.config_checks import check_config
from captioning.errors import ConfigError
from captioning.evaluation.run import evaluate_checkpoint
from captioning.model.checkpoint import checkpoint_vocabulary, read_checkpoint
from captioning.training.history import LossHistory
from captioning.training.resume import check_resumable, check_unfinished
from captioning.training.run_config import RunConfigInCheckpoint

log = logging.getLogger("train")


def train(cfg: DictConfig) -> dict:
    """Build the data, model and Trainer from `cfg`, fit, and return where the results are."""
    check_config(cfg)  # before anything is built: a value that cannot work is named now, not in a traceback
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.load_annotations()  # the vocabulary, and so the model's output layer, comes from them
    # Resuming (ckpt_path) restores everything; init_from only the weights. Either adopts the checkpoint's vocabulary.
    start = cfg.ckpt_path or cfg.get("init_from")
    checkpoint = read_checkpoint(start) if start else None
    if checkpoint is not None:
        vocabulary = checkpoint_vocabulary(checkpoint)
        # Another model or vocabulary first: that checkpoint cannot be resumed at all, finished or not.
        check_resumable(checkpoint, dict(cfg.model), datamodule.vocabulary_coverage(vocabulary))
        if cfg.ckpt_path:
            check_unfinished(checkpoint, cfg.trainer.get("max_epochs"), cfg.trainer.get("max_steps"))
        datamodule.vocabulary = vocabulary
    else:
        datamodule.vocabulary = datamodule.build_vocabulary()
    # One frozen encoder, built once the data is known to be there: the feature cache's and the model's.
    datamodule.encoder = encoder = instantiate(cfg.model.encoder)
    model = instantiate(cfg.model, encoder=encoder, vocabulary=datamodule.vocabulary.tokens, _convert_="all")
    if checkpoint is not None and not cfg.ckpt_path:
        model.load_weights(checkpoint)
        log.info(f"Initialised from the weights of {start} (a new optimizer, schedule and counters)")
    callbacks = [instantiate(callback) for callback in cfg.get("callbacks", {}).values()]
    callbacks.append(RunConfigInCheckpoint(OmegaConf.to_container(cfg, resolve=True)))
    loggers = [instantiate(logger) for logger in (cfg.get("logger") or {}).values()]
    if not loggers:  # ~logger: nothing to monitor the lr into (history.csv still records it)
        callbacks = [callback for callback in callbacks if not isinstance(callback, LearningRateMonitor)]
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [callback for callback in callbacks if not isinstance(callback, ProgressBar)]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)

    output_dir = Path(cfg.paths.output_dir)
    if datamodule.skipped_images:
        skipped_path = output_dir / "skipped_images.csv"
        pd.DataFrame(datamodule.skipped_images).to_csv(skipped_path, index=False)
        log.warning(f"{len(datamodule.skipped_images)} image(s) were skipped: listed in {skipped_path}")
    # best.ckpt is kept by the checkpoint callback that monitors a metric, last.ckpt by those that do not.
    savers = trainer.checkpoint_callbacks
    best = next((saver for saver in savers if saver.monitor is not None), None)
    result = {
        "output_dir": str(output_dir),
        "best_checkpoint": best.best_model_path if best else "",
        "best_by": f"{best.monitor} ({best.mode})" if best else "",
        "last_checkpoint": next((saver.best_model_path for saver in savers if saver.monitor is None), ""),
        "global_step": trainer.global_step,
        "train_samples": len(datamodule.datasets["train"]),
        "history": None,
        "optimized_metric": optimized_metric_value(trainer.callback_metrics, cfg.get("optimized_metric")),
    }
    history = next((callback for callback in callbacks if isinstance(callback, LossHistory)), None)
    if history is not None and history.rows:
        result["history"] = str(history.path)
        result["curves"] = str(history.curves_path) if history.curves_path else None
        log.info("Losses per epoch:\n" + history.table().to_string(index=False, float_format="%.4f"))
    log.info(f"Run directory:    {output_dir}")
    no_best = "nothing was validated" if best else "no checkpoint monitors a metric"
    log.info(f"Best checkpoint:  {result['best_checkpoint'] or f'none ({no_best})'}")
    log.info(f"Last checkpoint:  {result['last_checkpoint']}")
    log.info(f"Loss history:     {result['history']}")
    if result.get("curves"):
        log.info(f"Curves:           {result['curves']}")
    tensorboard = next((logger for logger in loggers if isinstance(logger, TensorBoardLogger)), None)
    if tensorboard is not None:
        log.info(f"TensorBoard logs: tensorboard --logdir {output_dir.parent}")
    evaluated = result["best_checkpoint"] or result["last_checkpoint"]
    if cfg.evaluate_after and evaluated:
        if not result["best_checkpoint"]:
            log.warning(f"No best checkpoint ({no_best}): evaluating the last one, {evaluated}")
        result["evaluation"] = evaluate_checkpoint(
            evaluated,
            output_dir / "evaluation",
            instantiate(cfg.eval),
            logger=tensorboard,  # the figures and eval_<split>/ scalars go beside the training curves
        )
    return result


def optimized_metric_value(metrics: dict, name: str | None) -> float | None:
    """The value of the metric `name` (e.g. val/bleu4) at the end of training, which a Hydra sweeper optimises;
    None when no metric is named."""
    if not name:
        return None
    if name not in metrics:
        logged = sorted(metrics)
        example = logged[0] if logged else "val/loss"
        raise ConfigError(
            f"optimized_metric={name} was not logged by this run (it logged {', '.join(logged) or 'nothing'}): "
            "a val/ metric needs a validation at the end of an epoch (trainer.limit_val_batches > 0, and no "
            f"trainer.max_steps that stops training first). Name a logged one, e.g. optimized_metric={example}."
        )
    return float(metrics[name])


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """The run; returns the value of `optimized_metric`, for a sweeper such as hparams_search=optuna."""
    return run_entry_point(train, cfg, "train")["optimized_metric"]


if __name__ == "__main__":
    register_resolvers()
    check_command_line(Path(__file__).parent / "conf", "train", sys.argv[1:])  # a mistyped key, before any folder
    main()
