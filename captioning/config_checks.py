"""Checks of the values that can be judged as soon as a run's configuration is composed: every entry point calls
`check_config` before it builds anything, so that a value that cannot work ends the run with one paragraph naming
its key and a valid example, instead of a traceback minutes later or a run that silently does something else."""

from __future__ import annotations

import logging
import typing
from collections.abc import Callable

import torch
from lightning.fabric.connector import _PRECISION_INPUT  # the values Lightning's Trainer takes
from omegaconf import DictConfig, OmegaConf

from captioning.data.readers import LAYOUTS, RESTVAL_CHOICES
from captioning.errors import ConfigError
from captioning.evaluation.run import EVALUATION_SPLITS
from captioning.model.encoder import ARCHITECTURES, GRIDS
from captioning.model.lightning_module import FLOAT16_UNSUPPORTED, TRAIN_STEPS, UNSUPPORTED_PRECISIONS
from captioning.model.objectives import BASELINES, OBJECTIVES, PENALTY_TARGETS

log = logging.getLogger(__name__)

# How to fill in the values that a config leaves mandatory (???), by key.
MISSING_EXAMPLES = {
    "ckpt": "ckpt=outputs/<run>/checkpoints/best.ckpt",
    "image": "image=photo.jpg (a file or a folder of images)",
    "data.root": "data.root=/data/flickr30k (the folder of the annotations and images)",
}


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_integer(value: object) -> bool:
    return _is_integer(value) and value >= 1


def _natural(value: object) -> bool:
    return _is_integer(value) and value >= 0


def _positive_number(value: object) -> bool:
    return _is_number(value) and value > 0


def _probability(value: object) -> bool:
    return _is_number(value) and 0 <= value < 1


def _epochs(value: object) -> bool:
    return _is_integer(value) and value >= -1


# (key, whether a value works, what a valid one is, a valid example); a key absent or null is not checked.
RULES: list[tuple[str, Callable[[object], bool], str, str]] = [
    ("data.batch_size", _positive_integer, "a batch size of 1 or more", "32"),
    ("data.eval_batch_size", _positive_integer, "a batch size of 1 or more", "64"),
    ("data.encode_batch_size", _positive_integer, "a batch size of 1 or more", "32"),
    ("data.num_workers", _natural, "a whole number of worker processes, 0 or more", "2"),
    ("model.encoder.image_size", _positive_integer, "a side in pixels, 1 or more", "224"),
    ("data.max_caption_length", _positive_integer, "a whole number of words, 1 or more", "20"),
    ("data.min_word_frequency", _positive_integer, "a whole number of occurrences, 1 or more", "5"),
    ("model.embed_dim", _positive_integer, "a whole number, 1 or more", "256"),
    ("model.hidden_dim", _positive_integer, "a whole number, 1 or more", "256"),
    ("model.attention_dim", _positive_integer, "a whole number, 1 or more", "256"),
    ("model.dropout", _probability, "a probability from 0 up to (not including) 1", "0.5"),
    ("model.attention_reg", lambda value: _is_number(value) and value >= 0, "a number, 0 or more", "1.0"),
    ("model.gradient_clip_norm", _positive_number, "a norm above 0, or null for no clipping", "5.0"),
    ("model.optimizer.lr", _positive_number, "a learning rate above 0", "1e-3"),
    ("trainer.max_epochs", _epochs, "a whole number of epochs (-1: no limit)", "30"),
    ("trainer.max_steps", _epochs, "a whole number of steps (-1: no limit)", "-1"),
    ("eval.beam_size", _positive_integer, "a beam of 1 caption or more (1: greedy)", "3"),
    ("eval.loss_samples", _positive_integer, "a whole number of captions, 1 or more", "512"),
    ("eval.num_samples", _natural, "a whole number of rows, 0 or more", "10"),
    ("eval.num_figures", _natural, "a whole number of figures, 0 or more", "5"),
    ("eval.bootstrap_resamples", _natural, "a whole number of resamples, 0 (no intervals) or more", "1000"),
    ("eval.confidence", lambda value: _is_number(value) and 0 < value < 1, "a level between 0 and 1", "0.95"),
    ("beam_size", _positive_integer, "a beam of 1 caption or more (1: greedy)", "3"),
    ("model.samples", _positive_integer, "a whole number of captions per image, 1 or more", "5"),
    ("model.temperature", _positive_number, "a temperature above 0", "1.0"),
]


def _literals(annotation: object) -> tuple:
    """The values of a (nested) typing.Literal, a Union of them included."""
    arguments = typing.get_args(annotation)
    return tuple(value for argument in arguments for value in (_literals(argument) or (argument,)))


# (key, the values that work); a key absent or null is not checked.
CHOICES: list[tuple[str, tuple]] = [
    ("model.train_step", TRAIN_STEPS),
    ("model.objective", OBJECTIVES),
    ("model.baseline", BASELINES),
    ("model.attention_target", PENALTY_TARGETS),
    ("model.encoder.arch", tuple(ARCHITECTURES)),
    ("model.encoder.grid", GRIDS),
    ("trainer.precision", tuple(value for value in _literals(_PRECISION_INPUT) if value not in UNSUPPORTED_PRECISIONS)),
    ("eval.split", EVALUATION_SPLITS),
    ("data.format", ("auto", *LAYOUTS)),
    ("data.restval", RESTVAL_CHOICES),
]


def missing_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """The keys left mandatory (???) in `cfg`, Hydra's own settings aside; nothing is resolved on the way."""
    missing = []
    for key in cfg.keys():
        full_key = f"{prefix}{key}"
        if full_key == "hydra":
            continue
        if OmegaConf.is_missing(cfg, key):
            missing.append(full_key)
        elif not OmegaConf.is_interpolation(cfg, key) and isinstance(cfg._get_node(key), DictConfig):
            missing += missing_keys(cfg[key], f"{full_key}.")
    return missing


def _shown(value: object) -> str:
    return "null" if value is None else str(value)


def _encoder_problems(cfg: DictConfig) -> list[str]:
    """Weights that the chosen ResNet has no enum member for, and data.image_size of earlier versions."""
    problems = []
    arch = OmegaConf.select(cfg, "model.encoder.arch", default="resnet50", throw_on_missing=False)
    weights = OmegaConf.select(cfg, "model.encoder.weights", default=None, throw_on_missing=False)
    if arch in ARCHITECTURES and weights is not None and weights not in ARCHITECTURES[arch][1].__members__:
        names = ", ".join([*ARCHITECTURES[arch][1].__members__, "null"])  # null: a frozen random encoder, offline
        problems.append(
            f"model.encoder.weights={weights} is not one of {names} (torchvision's weights of "
            f"model.encoder.arch={arch}): e.g. model.encoder.weights=IMAGENET1K_V1."
        )
    image_size = OmegaConf.select(cfg, "data.image_size", default=None, throw_on_missing=False)
    if image_size is not None:
        problems.append(
            f"data.image_size={image_size} is now model.encoder.image_size (the data's transforms follow the "
            f"encoder): set model.encoder.image_size={image_size} instead."
        )
    return problems


def _compile_problems(cfg: DictConfig) -> list[str]:
    """model.compile_step on a run that would train by the packed path, which does not compile: refused by the
    model at the first step, so named here, before a feature cache is built."""
    if OmegaConf.select(cfg, "model.compile_step", default=False) is not True:
        return []
    train_step = OmegaConf.select(cfg, "model.train_step", default="auto")
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    nodes = OmegaConf.select(cfg, "trainer.num_nodes", default=1)
    several = (_is_integer(devices) and devices > 1) or (_is_integer(nodes) and nodes > 1)
    if train_step == "packed" or (train_step == "auto" and (not on_gpu or several)):
        where = "on this machine's CPU" if not on_gpu else "with several processes"
        return [
            f"model.compile_step=true compiles the padded step that the CUDA graph replays, and this run trains by "
            f"the packed path ({where}), which does not compile: add model.compile_step=false."
        ]
    return []


def _self_critical_problems(cfg: DictConfig) -> list[str]:
    """What a self-critical run lacks: a checkpoint to start from, two samples for a mean-of-others baseline."""
    if OmegaConf.select(cfg, "model.objective", default=None) != "self_critical":
        return []
    problems = []
    if not (OmegaConf.select(cfg, "init_from", default=None) or OmegaConf.select(cfg, "ckpt_path", default=None)):
        problems.append(
            "Self-critical training starts from a model trained with cross-entropy: pass its checkpoint, e.g. "
            "init_from=outputs/<run>/checkpoints/best.ckpt (or ckpt_path= to resume a self-critical run)."
        )
    samples = OmegaConf.select(cfg, "model.samples", default=5)
    if (
        OmegaConf.select(cfg, "model.baseline", default=None) == "mean_of_others"
        and _is_integer(samples)
        and samples < 2
    ):
        problems.append(
            f"model.samples={samples} cannot work with model.baseline=mean_of_others, the mean reward of an "
            "image's other samples: draw 2 or more, e.g. model.samples=5, or use model.baseline=greedy."
        )
    if not OmegaConf.select(cfg, "data.train_per_image", default=False):
        problems.append(
            "model.objective=self_critical scores each image's samples against all its references: set "
            "data.train_per_image=true (experiment=scst does)."
        )
    return problems


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError, one paragraph for every problem found, if a value of `cfg` cannot work; warn about
    values that work otherwise than a user may expect (trainer.max_epochs=-1: until stopped)."""
    problems = [
        f"{key} has no value: pass one, e.g. {MISSING_EXAMPLES.get(key, f'{key}=<value>')}."
        for key in missing_keys(cfg)
    ]
    for key, works, valid, example in RULES:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is not None and not works(value):
            problems.append(f"{key}={_shown(value)} cannot work: it must be {valid}, e.g. {key}={example}.")
    for key, choices in CHOICES:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if key == "trainer.precision" and value in UNSUPPORTED_PRECISIONS:
            problems.append(FLOAT16_UNSUPPORTED)
        elif value is not None and value not in choices:
            shown = ", ".join(_shown(choice) for choice in choices)
            problems.append(f"{key}={_shown(value)} is not one of {shown}: e.g. {key}={choices[0]}.")
    problems += _encoder_problems(cfg)
    problems += _self_critical_problems(cfg)
    problems += _compile_problems(cfg)
    if problems:
        raise ConfigError(" ".join(problems))
    max_epochs = OmegaConf.select(cfg, "trainer.max_epochs", default=None)
    max_steps = OmegaConf.select(cfg, "trainer.max_steps", default=None)
    if max_epochs == -1 and (max_steps is None or max_steps == -1):
        log.warning(
            "trainer.max_epochs=-1 and no trainer.max_steps: training goes on until it is stopped (Ctrl-C, or a "
            "callback's early stopping). Set trainer.max_epochs=30 or trainer.max_steps=10000 for a run that ends."
        )
