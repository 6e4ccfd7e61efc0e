"""Figures from the tidy frame, one PNG each, drawn only when the sweep's runs support them."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from analysis.tables import measure, weight_type

# no software version or date in the files: the same records give byte-identical figures
PNG_METADATA = {"Software": None}


def pareto_front(points: pd.DataFrame) -> pd.DataFrame:
    """Runs that no other run beats with fewer or equal trainable parameters."""
    best, front = -1.0, []
    for _, row in points.sort_values(["method_params", "score"], ascending=[True, False]).iterrows():
        if row.score > best:
            best = row.score
            front.append(row)
    return pd.DataFrame(front)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=PNG_METADATA)
    plt.close(fig)
    return path


def accuracy_vs_parameters(ok: pd.DataFrame, path: Path) -> Path | None:
    if len(ok) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, runs in ok.groupby("method", sort=True):
        ax.scatter(runs.method_params, 100 * runs.score, label=method, alpha=0.8)
    front = pareto_front(ok)
    ax.step(front.method_params, 100 * front.score, where="post", color="black", linewidth=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters of the method (log scale; head excluded)")
    ax.set_ylabel(measure(ok).lower())
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def peak_memory(ok: pd.DataFrame, path: Path) -> Path | None:
    if ok.method.nunique() < 2 or ok.peak_memory_bytes.isna().all():
        return None
    memory = ok.groupby("method").peak_memory_bytes.median().sort_values() / 2**20
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.barh(memory.index, memory.values)
    ax.set_xlabel(f"peak training memory (MiB; {ok.memory_measure.dropna().iloc[0]})", fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def curve(ok: pd.DataFrame, column: str, xlabel: str, path: Path, by=("task", "method"), label=None) -> Path | None:
    """Mean test score (± std over seeds) against `column`, a line per `by` group, log2 x axis."""
    if ok[column].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, runs in ok.groupby(list(by), sort=True):
        mean = runs.groupby(column).score.agg(["mean", "std"]).fillna(0)
        ax.errorbar(mean.index, 100 * mean["mean"], yerr=100 * mean["std"], marker="o", capsize=3,
                    label=label(*key) if label else ": ".join(map(str, key)))
    ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(measure(runs).lower())
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def figures(frame: pd.DataFrame, folder: Path) -> list[Path]:
    ok = frame[frame.status == "ok"]
    drawn = [
        accuracy_vs_parameters(ok, folder / "accuracy_vs_parameters.png"),
        curve(ok[ok.method == "lora"], "r", "LoRA rank r (log scale)", folder / "accuracy_vs_rank.png",
              by=("task", "targets"), label=lambda task, targets: f"{task}: {weight_type(targets)}"),
        peak_memory(ok, folder / "peak_memory.png"),
        curve(ok, "train_size", "training examples (log scale)", folder / "data_size.png"),
        curve(ok[ok.method.isin(["prompt_tuning", "prefix_tuning"])], "num_virtual_tokens", "virtual tokens (log scale)",
              folder / "prompt_length.png"),
        curve(ok, "model_params", "model parameters (log scale)", folder / "model_scale.png"),
    ]
    return [p for p in drawn if p is not None]
