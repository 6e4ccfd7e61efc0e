"""What a run costs: parameters, memory, adapter bytes, serving latency, and the environment."""

from __future__ import annotations

import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import torch
from peft import PeftModel

from bench import optimizers, quantization
from bench.families import Family
from bench.machine import cpu_count

# peft keeps a frozen copy of every module it trains in full (the head), to allow disabling the adapter
PEFT_FROZEN_COPY = ".original_module."


def count_params(model: torch.nn.Module, family: Family) -> dict:
    """Unique parameters (named_parameters skips tied duplicates); works on the meta device."""
    total = trainable = head = 0
    for name, p in model.named_parameters():
        if PEFT_FROZEN_COPY in name:
            continue
        total += quantization.weights(p)
        if p.requires_grad:
            trainable += p.numel()
            head += p.numel() if family.is_head(name) else 0
    return {
        "total": total,
        "trainable": trainable,
        "trainable_pct": 100.0 * trainable / total,
        "method": trainable - head,
        "head": head,
    }


def analytic_bytes(
    model: torch.nn.Module,
    optimizer: str,
    optimizer_args: dict,
    frozen_element: int | None = None,
    stored: dict[int, float] | None = None,
    method_state: int = 0,
) -> dict:
    """Bytes of the weights (every tensor held: diff pruning's differences and peft's frozen copy of
    the head too), the gradients held at once and the optimizer's state (bench/optimizers.py), which
    take the trained weights' element size. Each weight counts its own element size, or
    `frozen_element` for the frozen ones: what they will take once stored in another precision
    (train.precision=bf16), from a model that is not (one built on the meta device); `stored` gives the
    bytes per element of particular weights (by id: a quantized base's layers, bench/quantization.py);
    `method_state`, elements the method keeps beside the optimizer's state (Method.state_elements)."""
    params = list(model.parameters())
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    trainable = [p for _, p in named]
    element = trainable[0].element_size() if trainable else params[0].element_size()
    stored = stored or {}

    def size(p) -> float:
        if id(p) in stored:
            return stored[id(p)]
        return p.element_size() if p.requires_grad or frozen_element is None else frozen_element

    return {
        "weights": round(sum(p.numel() * size(p) for p in params)),
        "gradients": optimizers.gradient_elements(optimizer, named) * element,
        "optimizer_state": (
            optimizers.state_elements(optimizer, optimizer_args, named, getattr(model, "config", None)) + method_state
        )
        * element,
    }


# the profiler's tensor categories, in the order of torch.profiler._memory_profiler._CATEGORY_TO_INDEX
_CATEGORIES = (
    "parameters",
    "optimizer_state",
    "inputs",
    "temporary",
    "activations",
    "gradients",
    "autograd_detail",
    "uncategorized",  # tensors the profiler saw but could not attribute (mostly autograd-saved intermediates)
)


@contextmanager
def cpu_step_profile(out: dict):
    """Tensor-level CPU memory of the enclosed code, from the PyTorch profiler's memory timeline:
    fills `out` with the peak of live tensor bytes and the breakdown at that peak."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        yield
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline("cpu")
    peak = max(sizes, key=lambda row: sum(row[1:]))
    out.update(
        measure="torch.profiler memory timeline (tensor-level, one training step)",
        peak_bytes=sum(peak[1:]),
        breakdown_at_peak=dict(zip(_CATEGORIES, peak[1:])),
    )


class CudaPeak:
    """Peak CUDA memory over the training loop as the caching allocator saw it, with the
    evaluations inside the loop left out (`paused`)."""

    def __init__(self, out: dict):
        self.out, self.allocated, self.reserved = out, 0, 0

    def __enter__(self):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return self

    def _take(self) -> None:
        torch.cuda.synchronize()
        self.allocated = max(self.allocated, torch.cuda.max_memory_allocated())
        self.reserved = max(self.reserved, torch.cuda.max_memory_reserved())

    @contextmanager
    def paused(self):
        self._take()
        yield
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    def __exit__(self, *exc):
        self._take()
        self.out.update(
            measure="torch.cuda.max_memory_allocated (training steps; evaluation excluded)",
            peak_bytes=self.allocated,
            peak_reserved_bytes=self.reserved,
        )


# other processes using this many of the machine's CPUs on average make a run's timings not clean
BUSY_CPUS = 0.25


class MachineLoad:
    """What other processes used of the machine's CPUs while the enclosed code ran: the machine's
    busy CPU time minus this process's and its children's, per second of wall time. A load average
    cannot tell this run's own threads from others', and lags by a minute."""

    def __init__(self, out: dict):
        self.out = out

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        machine = psutil.cpu_times()
        own = psutil.Process().cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return time.perf_counter(), busy, own.user + own.system + own.children_user + own.children_system

    def __enter__(self):
        self.start = self._sample()
        return self

    def __exit__(self, *exc):
        end = self._sample()
        wall = end[0] - self.start[0]
        others = max(0.0, (end[1] - self.start[1]) - (end[2] - self.start[2])) / wall if wall > 0 else 0.0
        cpus = psutil.cpu_count() or 1
        self.out.update(
            other_processes_cpus=round(others, 2),
            machine_cpus=cpus,
            busy=others >= BUSY_CPUS,
            measure="machine-wide busy CPU time (psutil) minus this process's, per second, while it trained",
        )


class Stages:
    """Seconds per stage of a run, from its process's start (`start`: the interpreter and imports)
    to the end; `wall` - the sum of the stages is what no stage timed."""

    def __init__(self, fresh_process: bool):
        self.began = psutil.Process().create_time() if fresh_process else time.time()
        self.seconds = {"start": time.time() - self.began}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def record(self) -> dict:
        wall = time.time() - self.began
        return {
            "wall_seconds": wall,
            "seconds": dict(self.seconds),
            "untimed_seconds": wall - sum(self.seconds.values()),
        }


def process_peak_rss(shared_process: bool) -> dict:
    """The process's peak resident memory (interpreter, libraries, weights, activations, allocator
    slack): what a machine must hold, beside the tensor peak. A shared process (process=inline)
    counts every run it ran before this one too."""
    import resource  # POSIX only: imported where used

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return {
        "process_peak_rss_bytes": peak if sys.platform == "darwin" else peak * 1024,
        "process_peak_rss_of": "this and earlier runs of a shared process" if shared_process else "this run's process",
    }


# what holds trained numbers; peft's generated README and the adapter's JSON config are not weights
WEIGHT_FILES = (".safetensors", ".bin", ".pkl")


def stored_bytes(save, model, folder: Path | None) -> dict:
    """Bytes of the weight files a user keeps per task, written by the method's own `save` into
    `folder` (kept), or into a temporary folder when `folder` is None. A save that fails (a full
    disk) fails this measurement, recorded with its error, not the run and its scores."""
    try:
        with tempfile.TemporaryDirectory() as scratch:
            where = folder or Path(scratch) / "saved"
            shutil.rmtree(where, ignore_errors=True)  # a forced rerun replaces what the last one kept
            save(model, where)
            files = {str(p.relative_to(where)): p.stat().st_size for p in sorted(where.rglob("*")) if p.is_file()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type for I/O errors
        return {"bytes": None, "error": f"{type(e).__name__}: {e}"}
    weights = sum(size for name, size in files.items() if name.endswith(WEIGHT_FILES))
    return {"bytes": weights, "files": files, "folder": str(folder) if folder else None}


@torch.no_grad()
def serving_latency(model: torch.nn.Module, batch: dict, samples: int) -> dict:
    """Batch-1 forward latency in eval mode; for adapters that can merge into the weights
    (LoRA, IA3) also with the adapter merged, the way it would be served."""
    if samples == 0:
        return {}
    model.eval()
    out = {
        "batch_size": 1,
        "tokens": int(batch["attention_mask"].sum()),
        "samples": samples,
        **_timed(model, batch, samples),
    }
    if isinstance(model, PeftModel) and not model.active_peft_config.is_prompt_learning:
        model.merge_adapter()
        try:
            out["merged"] = _timed(model, batch, samples)
        finally:
            model.unmerge_adapter()
    return out


def _timed(model, batch: dict, samples: int) -> dict:
    times = []
    for i in range(samples + 1):  # the first pass warms caches and is dropped
        start = time.perf_counter()
        model(**batch)
        if batch["input_ids"].is_cuda:
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return latency_stats(times)


def latency_stats(seconds: list[float]) -> dict:
    """Median and 90th percentile (nearest rank: the smallest time at least 90% of times do not exceed), in
    milliseconds."""
    times = sorted(seconds)
    return {"median_ms": 1000 * statistics.median(times), "p90_ms": 1000 * times[math.ceil(0.9 * len(times)) - 1]}


def environment(device: str) -> dict:
    import peft
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        **_git(),
        "device": torch.cuda.get_device_name() if device == "cuda" else _cpu_name(),
        "cpu_count": cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "hostname": platform.node(),
        "pid": os.getpid(),
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _git() -> dict:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, check=False
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": dirty}
