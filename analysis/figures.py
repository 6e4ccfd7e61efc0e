"""Figures from the tidy frame, one PNG each, drawn only when the sweep's runs support them."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from analysis import uncertainty
from analysis.tables import (
    MAJORITY,
    MixedSettings,
    check_lines,
    majority,
    measure,
    method_label,
    weight_type,
)
from bench.names import component
from bench.selection import select

# no software version or date in the files: the same records give byte-identical figures
PNG_METADATA = {"Software": None}


def pareto_front(points: pd.DataFrame, cost: str = "method_params") -> pd.DataFrame:
    """Runs that no other run beats at an equal or lower `cost` (trainable parameters, peak memory)."""
    best, front = -1.0, []
    for _, row in points.sort_values([cost, "score"], ascending=[True, False]).iterrows():
        if row.score > best:
            best = row.score
            front.append(row)
    return pd.DataFrame(front)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=PNG_METADATA)
    plt.close(fig)
    return path


def _baseline_line(ax, y: float, label: str, color) -> None:
    """A method that trains no parameter of the model, drawn as a labelled reference line."""
    ax.axhline(y, linestyle="--", linewidth=1, color=color)
    ax.annotate(label, (1, y), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=7, color=color)


def accuracy_vs_parameters(selected: pd.DataFrame, path: Path) -> Path | None:
    """Each method at its selected setting (mean over seeds, bars: their standard deviation)
    against its trainable parameters; baselines that train no model parameter, and the majority
    class, as reference lines."""
    if selected.label.nunique() < 2:
        return None
    points = selected.groupby("label", sort=True).agg(
        method_params=("method_params", "first"), score=("score", "mean"), std=("score", "std")
    )
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
    for label, p in points.iterrows():
        if p.method_params > 0:
            ax.errorbar(
                p.method_params,
                100 * p.score,
                yerr=100 * (0 if pd.isna(p["std"]) else p["std"]),
                fmt="o",
                capsize=3,
                label=label,
                color=next(colors),
            )
        else:
            _baseline_line(ax, 100 * p.score, label, next(colors))
    baseline = majority(selected)
    if baseline is not None:
        _baseline_line(ax, 100 * uncertainty.point(selected.metric.dropna().iloc[0], [baseline]), MAJORITY, "grey")
    trained = points[points.method_params > 0]
    if len(trained) > 1:
        front = pareto_front(trained)
        ax.step(front.method_params, 100 * front.score, where="post", color="black", linewidth=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters of the method (log scale; head excluded)")
    ax.set_ylabel(measure(selected).lower())
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def accuracy_vs_memory(selected: pd.DataFrame, path: Path) -> Path | None:
    """Each setting of method, base and optimizer at its selected learning rate: its test score (mean over seeds,
    bars: their standard deviation) against its tensor peak in training, with the Pareto front: the settings no
    other beats in less memory. Drawn where the runs differ in base or optimizer."""
    if selected.quantize.nunique() < 2 and selected.optimizer.nunique() < 2:
        return None
    points = (
        selected.dropna(subset=["peak_memory_bytes"])
        .groupby("label", sort=True)
        .agg(peak=("peak_memory_bytes", "mean"), score=("score", "mean"), std=("score", "std"))
    )
    if len(points) < 2:
        return None
    points = points.assign(peak=points.peak / 2**20)
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    markers = iter(["o", "s", "^", "D", "v", "P", "X", "*"] * 4)
    for label, p in points.iterrows():
        ax.errorbar(
            p.peak,
            100 * p.score,
            yerr=100 * (0 if pd.isna(p["std"]) else p["std"]),
            fmt=next(markers),
            capsize=3,
            label=label,
        )
    front = pareto_front(points, "peak")
    ax.step(front.peak, 100 * front.score, where="post", color="black", linewidth=1, label="Pareto front")
    ax.set_xlabel(f"tensor peak in training (MiB; {selected.memory_measure.dropna().iloc[0]})")
    ax.set_ylabel(measure(selected).lower())
    ax.legend(fontsize=6, loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def accuracy_vs_forgetting(selected: pd.DataFrame, path: Path) -> Path | None:
    """Each method at its selected setting: its test score against its forgetting (the loss on
    general text after tuning minus before; bench/forgetting.py), means over seeds."""
    points = (
        selected.dropna(subset=["forgetting"])
        .groupby("label", sort=True)
        .agg(forgetting=("forgetting", "mean"), score=("score", "mean"))
    )
    if len(points) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
    for label, p in points.iterrows():
        ax.plot(p.forgetting, 100 * p.score, "o", label=label, color=next(colors))
    ax.axvline(0, linestyle="--", linewidth=1, color="grey")
    ax.set_xlabel("forgetting: loss on general English after tuning minus before (nats per token)")
    ax.set_ylabel(measure(selected).lower())
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _curve(runs: pd.DataFrame) -> pd.Series:
    """Mean validation score (over seeds) by training examples seen, from each record's evaluations."""
    return (
        pd.DataFrame(
            [
                {"examples": e["step"] * r.batch_size * (r.grad_accum or 1), "score": e.get(r.metric)}
                for r in runs.itertuples()
                for e in r.validation
            ],
            columns=["examples", "score"],
        )
        .dropna()
        .groupby("examples")
        .score.mean()
    )


def learning_curve(selected: pd.DataFrame, path: Path) -> Path | None:
    """Validation score against training examples seen, a line per method at its selected setting
    (mean over seeds); methods that do not train as reference lines at their validation score."""
    trained = selected.steps.fillna(0) > 1
    curves = {label: _curve(runs) for label, runs in selected[trained].groupby("label", sort=True)}
    curves = {label: points for label, points in curves.items() if len(points)}  # older records kept no curve
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
    for label, points in curves.items():
        ax.plot(points.index, 100 * points.values, marker=".", label=label, color=next(colors))
    for label, runs in selected[~trained].groupby("label", sort=True):
        _baseline_line(ax, 100 * runs.val_score.mean(), label, next(colors))
    ax.set_xlabel("training examples seen")
    ax.set_ylabel(f"validation {selected.metric.dropna().iloc[0]} (%)")
    ax.legend(fontsize=7)
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
    """Mean test score (± std over seeds) against `column`, a line per `by` group, log2 x axis;
    left out, with a warning, where a line would join runs that differ in more than `column`."""
    if ok.empty or ok.groupby(list(by))[column].nunique().max() < 2:  # no line with two points
        return None
    try:
        check_lines(ok, list(by), column, f"figure {path.name}")
    except MixedSettings as e:
        warnings.warn(str(e), stacklevel=2)
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, runs in ok.groupby(list(by), sort=True):
        mean = runs.groupby(column).score.agg(["mean", "std"]).fillna(0)
        ax.errorbar(
            mean.index,
            100 * mean["mean"],
            yerr=100 * mean["std"],
            marker="o",
            capsize=3,
            label=label(*key) if label else ": ".join(map(str, key)),
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(measure(runs).lower())
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def figures(frame: pd.DataFrame, folder: Path) -> list[Path]:
    ok = frame[frame.status == "ok"]
    selected = select(frame)
    selected = (
        selected.assign(label=selected.apply(method_label, axis=1)) if len(selected) else selected.assign(label=None)
    )
    tasks = sorted(selected.task.unique())
    # a task name from a record becomes part of a file name: as one plain path component
    per_task = [(selected[selected.task == task], "" if len(tasks) == 1 else f"_{component(task)}") for task in tasks]
    drawn = [
        *(accuracy_vs_parameters(runs, folder / f"accuracy_vs_parameters{suffix}.png") for runs, suffix in per_task),
        *(learning_curve(runs, folder / f"learning_curve{suffix}.png") for runs, suffix in per_task),
        *(accuracy_vs_forgetting(runs, folder / f"accuracy_vs_forgetting{suffix}.png") for runs, suffix in per_task),
        *(accuracy_vs_memory(runs, folder / f"accuracy_vs_memory{suffix}.png") for runs, suffix in per_task),
        curve(
            ok[ok.method == "lora"],
            "r",
            "LoRA rank r (log scale)",
            folder / "accuracy_vs_rank.png",
            by=("task", "targets"),
            label=lambda task, targets: f"{task}: {weight_type(targets)}",
        ),
        peak_memory(ok, folder / "peak_memory.png"),
        curve(ok, "train_size", "training examples (log scale)", folder / "data_size.png"),
        curve(
            ok[ok.method.isin(["prompt_tuning", "prefix_tuning"])],
            "num_virtual_tokens",
            "virtual tokens (log scale)",
            folder / "prompt_length.png",
        ),
        curve(ok, "model_params", "model parameters (log scale)", folder / "model_scale.png"),
    ]
    return [p for p in drawn if p is not None]
