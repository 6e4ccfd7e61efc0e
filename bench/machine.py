"""Facts about the machine a run is on: a leaf module that the engine and the entry points share."""

from __future__ import annotations

import os


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity), not the machine's total."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def device_of(cfg) -> str:
    """The device `train.device` names; `auto`: CUDA where there is one."""
    if cfg.train.device == "auto":
        import torch  # deferred: the launcher and a config error must answer without torch's seconds of import

        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.train.device
