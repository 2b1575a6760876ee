"""Evaluate a trained captioner: python evaluate.py ckpt=outputs/<run>/checkpoints/best.ckpt [eval.beam_size=3];
compare two on the same images: python evaluate.py ckpt=A.ckpt compare=B.ckpt."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig

from captioning.cli import check_command_line, register_resolvers, run_entry_point
from captioning.config_checks import check_config
from captioning.evaluation.compare import compare_checkpoints
from captioning.evaluation.run import evaluate_checkpoint

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict:
    """Evaluate `cfg.ckpt` as `cfg.eval` says, writing into `cfg.paths.output_dir`; with `cfg.compare`, evaluate
    both checkpoints into its A/ and B/ and compare them there."""
    check_config(cfg)
    data_overrides = {key: value for key, value in cfg.data.items() if value is not None}
    if cfg.get("compare"):
        if cfg.get("logger"):
            log.info("compare= writes reports only: no logger is used (each checkpoint's metrics.json is in A/, B/)")
        return compare_checkpoints(
            to_absolute_path(cfg.ckpt),
            to_absolute_path(cfg.compare),
            cfg.paths.output_dir,
            instantiate(cfg.eval),
            data_overrides=data_overrides,
        )
    loggers = [instantiate(logger) for logger in (cfg.get("logger") or {}).values()]
    return evaluate_checkpoint(
        to_absolute_path(cfg.ckpt),
        cfg.paths.output_dir,
        instantiate(cfg.eval),
        data_overrides=data_overrides,
        logger=loggers[0] if loggers else None,
    )


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_entry_point(evaluate, cfg, "evaluate")


if __name__ == "__main__":
    register_resolvers()
    check_command_line(Path(__file__).parent / "conf", "evaluate", sys.argv[1:])  # a mistyped key, before any folder
    main()
