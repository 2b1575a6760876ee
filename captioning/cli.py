"""What the entry points share: the resolvers their configs use, a command line whose keys are checked before
Hydra starts (a typo is named with the nearest keys), user errors that end the program with their message and
no traceback, and no empty run folder left behind by a run that fails (see run_folders)."""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import logging
import shutil
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser  # Hydra's own command-line parser, flags and all
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.utils import get_class
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from captioning.errors import CaptioningError
from captioning.run_folders import remove_if_empty, run_suffix
from captioning.sweep_names import job_folder

# The frozen encoder stays in eval mode on purpose; Lightning's warning about it would only alarm users.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
# The step checkpoints hold the weights after the step they count, which is what resuming at that step needs.
warnings.filterwarnings("ignore", message=r".*manual optimization and every_n_train_steps.*")
# conf/hydra/launcher/submitit_*.yaml set the launchers' options under the plugin's own names, so that
# hydra/launcher=submitit_slurm is ours; Hydra then validates them against the plugin's schema, and says so.
warnings.filterwarnings("ignore", message=r"(?s).*hydra/launcher/submitit_.* is validated against ConfigStore schema")

T = TypeVar("T")


def register_resolvers() -> None:
    """The OmegaConf resolvers that conf/hydra/default.yaml names; every entry point (and the tests) calls this
    before a config is composed."""
    # ${run_suffix:}: outputs/<date_time>_<suffix>, so that two runs launched together never share a folder.
    OmegaConf.register_new_resolver("run_suffix", run_suffix, use_cache=True, replace=True)
    # ${subfolder:NAME} is "NAME/", or nothing for a null NAME: run folders are outputs/[<experiment>/]<date_time>.
    OmegaConf.register_new_resolver("subfolder", lambda name: f"{name}/" if name else "", replace=True)
    # ${job_folder:NUM,OVERRIDES,EXCLUDED}: a sweep job's folder, e.g. 0_hidden_dim-256 (see sweep_names).
    OmegaConf.register_new_resolver("job_folder", job_folder, replace=True)


def _leaf_keys(node: DictConfig, prefix: str = "") -> list[str]:
    """Every key of `node` that holds a value, dotted (nothing is resolved)."""
    keys = []
    for key in node.keys():
        full_key = f"{prefix}{key}"
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_interpolation():
            keys += _leaf_keys(child, f"{full_key}.")
        else:
            keys.append(full_key)
    return keys


def _nearest(key: str, keys: list[str]) -> list[str]:
    """The keys closest to `key`: the same last part elsewhere, then the closest spellings."""
    close = difflib.get_close_matches(key, keys, n=2, cutoff=0.7)
    last = key.rsplit(".", 1)[-1]
    same_name = [candidate for candidate in keys if candidate.rsplit(".", 1)[-1] == last]
    return list(dict.fromkeys(same_name[:2] + close))[:2]


def _did_you_mean(key: str, keys: list[str], value: str) -> str:
    nearest = _nearest(key, keys)
    if not nearest:
        return "Run with --cfg job to list every key."
    return "Did you mean " + " or ".join(f"{candidate}={value}" for candidate in nearest) + "?"


def _target_parameters(node: DictConfig) -> set[str] | None:
    """The keyword arguments that the `_target_` of `node` takes, or None if it takes any (**kwargs) or cannot
    be inspected."""
    try:
        target = get_class(node._target_) if "." in str(node._target_) else None
        parameters = inspect.signature(target).parameters.values()
    except Exception:  # a function, or not importable here: instantiate will say
        return None
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return None
    return {parameter.name for parameter in parameters}


def _problem(override: Override, cfg: DictConfig, keys: list[str]) -> str | None:
    """What is wrong with one key=value override of the composed `cfg`, or None."""
    key = override.key_or_group
    value = override.get_value_element_as_str() if not override.is_sweep_override() else "..."
    parent_key, _, name = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None, throw_on_missing=False) if parent_key else cfg
    exists = isinstance(parent, DictConfig) and name in parent.keys()  # a mandatory (???) value is a key too
    if override.is_delete() or override.is_force_add():
        return None
    if override.is_add():
        if exists or not isinstance(parent, DictConfig) or "_target_" not in parent:
            return None
        accepted = _target_parameters(parent)
        if accepted is None or name in accepted:
            return None
        return (
            f"+{key}={value} adds an argument that {parent._target_} does not take. {_did_you_mean(key, keys, value)}"
        )
    if exists:
        return None
    return f"{key} is not a key of this configuration. {_did_you_mean(key, keys, value)}"


# Group options that need a Hydra plugin of an optional extra: the plugin's package and the extra.
PLUGINS = {
    "hparams_search=optuna": ("hydra_plugins.hydra_optuna_sweeper", "sweeps"),
    "hydra/launcher=submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "cluster"),
    "hydra/launcher=submitit_local": ("hydra_plugins.hydra_submitit_launcher", "cluster"),
}


def _plugin_problems(groups: list[str], multirun: bool) -> list[str]:
    """What keeps the group options `groups` from working here: a plugin that is not installed, or Slurm's
    commands missing for a sweep sent to Slurm."""
    problems = []
    for group in groups:
        if group in PLUGINS and importlib.util.find_spec(PLUGINS[group][0]) is None:
            extra = PLUGINS[group][1]
            problems.append(f"{group} needs the [{extra}] extra: pip install -e '.[{extra}]', then run it again.")
    if "hydra/launcher=submitit_slurm" in groups and multirun and shutil.which("sbatch") is None:
        problems.append(
            "hydra/launcher=submitit_slurm submits each job with Slurm's sbatch, which this machine does not have: "
            "run the command on the cluster's login node, or run the same jobs here with hydra/launcher=submitit_local."
        )
    return problems


def check_command_line(config_dir: Path, config_name: str, arguments: list[str]) -> None:
    """Before Hydra starts (and makes a run folder): exit with one paragraph if a key=value of the command line
    `arguments` names a key that the composed config lacks, with the nearest keys, or adds (+key) an argument
    that its object does not take. Anything else, such as an unknown group option, is left to Hydra's message."""
    try:
        command_line = get_args_parser().parse_args(arguments)
        config_name = command_line.config_name or config_name
        overrides = OverridesParser.create().parse_overrides(command_line.overrides)
        # Groups first (they decide which keys exist), the first option of a sweep standing for all.
        groups = []
        for override in overrides:
            if "." not in override.key_or_group and not override.is_delete() and override.value_type is not None:
                option = override.value()
                option = option.list[0] if override.is_sweep_override() and hasattr(option, "list") else option
                if isinstance(option, str):
                    groups.append(f"{override.get_key_element()}={option}")
    except (Exception, SystemExit):  # a command line that Hydra itself refuses: its message says why
        return
    problems = _plugin_problems(groups, command_line.multirun)
    if problems:
        print("Error: " + " ".join(problems), file=sys.stderr)
        sys.exit(1)
    try:
        register_resolvers()
        with initialize_config_dir(str(config_dir), version_base="1.3"):
            cfg = compose(config_name, overrides=groups, return_hydra_config=True)
    except (Exception, SystemExit):
        return
    keys = _leaf_keys(cfg)
    problems = [_problem(override, cfg, keys) for override in overrides if "." in override.key_or_group]
    problems = [problem for problem in problems if problem]
    if problems:
        print("Error: " + " ".join(problems), file=sys.stderr)
        sys.exit(1)


def run_entry_point(function: Callable[[DictConfig], T], cfg: DictConfig, name: str) -> T:
    """Run `function(cfg)` and return what it returns; a CaptioningError is logged as one paragraph and exits
    with status 1. A run that fails in any way (an error, Ctrl-C, SIGTERM) removes its run folder if it wrote
    nothing of its own in it."""
    try:
        return function(cfg)
    except BaseException as error:
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, CaptioningError):
            cause = cause.__cause__  # Hydra's instantiate wraps what a constructor raises
        if cause is not None:
            logging.getLogger(name).error(str(cause))
        if HydraConfig.initialized():
            remove_if_empty(Path(HydraConfig.get().runtime.output_dir))
        if isinstance(error, SIGTERMException):  # Lightning stopped the run between two steps
            sys.exit(128 + signal.SIGTERM)  # 143: how shells and schedulers read a process ended by SIGTERM
        if cause is None:
            raise
        sys.exit(1)
