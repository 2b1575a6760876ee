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


def resident_memory_gb(include_children: bool = True) -> float:
    """Resident memory (VmRSS) of this process and, optionally, its children, in GB."""
    pids = [os.getpid()]
    if include_children:
        children = f"/proc/{os.getpid()}/task/{os.getpid()}/children"
        if os.path.exists(children):
            pids += [int(pid) for pid in open(children).read().split()]
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except FileNotFoundError:
            pass
    return total / 1e9


def report(figures: dict, settings: dict) -> None:
    """Print one JSON line: the figures, the settings they were measured with and the machine."""
    machine = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }
    print(json.dumps({**figures, "settings": settings, "machine": machine}))
