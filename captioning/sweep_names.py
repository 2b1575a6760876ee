"""Names of sweep jobs from their overrides: `python train.py -m model.hidden_dim=256,512` runs its jobs in
<sweep>/0_hidden_dim-256 and <sweep>/1_hidden_dim-512, so that TensorBoard's list of runs tells them apart.

A folder name keeps to the characters that Hydra reads unquoted in a path (`init_from=<sweep>/0_lr-0.001/...`
works as typed): `key-value` items joined by `_`, where `key=value` would need quotes on the command line."""

from __future__ import annotations

import re
from collections.abc import Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser

# Longer descriptions fall back to the job number alone: TensorBoard's run list and shells stay readable.
MAX_DESCRIPTION_LENGTH = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def describing_overrides(overrides: Sequence[str], exclude_keys: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(key, value) of every command-line override in `overrides` (Hydra's `key=value` strings) but those of
    `exclude_keys` or under one of them (paths, data roots: what does not describe the run). Keys are shortened
    to their last part (`model.hidden_dim` -> `hidden_dim`) where no other override's ends the same; `~key`
    reads `key`, `null`."""
    excluded = {str(key) for key in exclude_keys}
    described = []
    for override in OverridesParser.create().parse_overrides([str(override) for override in overrides]):
        key = override.key_or_group
        if key in excluded or any(key.startswith(f"{parent}.") for parent in excluded):
            continue
        value = "null" if override.is_delete() else override.input_line.split("=", 1)[1]
        described.append((key, value))
    last_parts = [re.split(r"[./]", key)[-1] for key, _ in described]
    return [
        (last if last_parts.count(last) == 1 else key.replace("/", "."), value)
        for (key, value), last in zip(described, last_parts)
    ]


def job_label(described: Sequence[tuple[str, str]]) -> str:
    """`hidden_dim=256, lr=0.001`: what sets a job apart, as a legend reads it."""
    return ", ".join(f"{key}={value}" for key, value in described)


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_")  # '/data/x y' -> data_x_y


def job_folder(job_number: int, overrides: Sequence[str], exclude_keys: Sequence[str] = ()) -> str:
    """The folder of sweep job `job_number`: `3_hidden_dim-512_lr-0.001` from its overrides, or `3` when none
    describes it or the description would be longer than MAX_DESCRIPTION_LENGTH characters (the resolver
    `${job_folder:...}` of conf/hydra/default.yaml)."""
    try:
        described = describing_overrides(overrides, exclude_keys)
    except Exception:  # an override that the parser reads otherwise than the sweeper wrote it: the number alone
        return str(job_number)
    description = "_".join(f"{_safe(key)}-{_safe(value)}" for key, value in described)
    return (
        f"{job_number}_{description}" if description and len(description) <= MAX_DESCRIPTION_LENGTH else str(job_number)
    )
