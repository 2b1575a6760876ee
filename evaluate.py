"""Evaluate a trained captioner: python evaluate.py ckpt=outputs/<run>/checkpoints/best.ckpt [eval.beam_size=3]."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig

from captioning.cli import check_command_line, register_resolvers, run_entry_point
from captioning.config_checks import check_config
from captioning.evaluation.run import evaluate_checkpoint


def evaluate(cfg: DictConfig) -> dict:
    """Evaluate `cfg.ckpt` as `cfg.eval` says, writing into `cfg.paths.output_dir`."""
    check_config(cfg)
    loggers = [instantiate(logger) for logger in (cfg.get("logger") or {}).values()]
    data_overrides = {key: value for key, value in cfg.data.items() if value is not None}
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
