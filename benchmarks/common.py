"""Helpers shared by the benchmarks: the machine's matrix-product rate, timing, memory, JSON output."""

from __future__ import annotations

import json
import os
import platform
import time

import torch


def gemm_gflops(size: int = 2048, repeats: int = 10) -> float:
    """Measured fp32 matrix-product rate of this machine (GFLOP/s): the roofline the figures are held to."""
    left, right = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        left @ right
    start = time.perf_counter()
    for _ in range(repeats):
        left @ right
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def resident_memory_gb() -> float:
    """Resident memory of this process and its children (DataLoader workers), in GB.

    Counted as PSS (proportional set size): pages shared between the forked workers count once in all,
    where summing each process's RSS would count them once per process.
    """
    pids = [os.getpid()]
    children = f"/proc/{os.getpid()}/task/{os.getpid()}/children"
    if os.path.exists(children):
        pids += [int(pid) for pid in open(children).read().split()]
    total_kb = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                total_kb += next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            pass
    return total_kb * 1024 / 1e9


def report(figures: dict, settings: dict) -> None:
    """Print one JSON line: the figures, the settings they were measured with and the machine."""
    machine = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }
    print(json.dumps({**figures, "settings": settings, "machine": machine}))
