"""Paper-style tables from the tidy frame, as Markdown, LaTeX and CSV.

Which tables a sweep gets follows from what varies in it, not from its name: LoRA runs over
several ranks or target sets give the rank x weight-type grid (LoRA paper, Table 6); several
methods give the methods table with trainable parameters (Tables 2 and 4); several prompt lengths,
prompt inits, training-set sizes or models give their tables. Cells are the mean of each task's
primary test metric (accuracy; answer exact match for arithmetic; F1a for MultiRC ...) in
percent, with the standard deviation over seeds when a setting ran with more than one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis import uncertainty
from bench.fit import peaks
from bench.methods import METHODS, Method
from bench.results import METHOD_KEYS
from bench.selection import select

# config columns that tell settings apart, to name what differs when a cell would mix them
SETTING_COLUMNS = [
    "model",
    "task",
    "method",
    "lr",
    *dict.fromkeys(k for keys in METHOD_KEYS.values() for k in keys),
    "train_size",
    "steps",
    "batch_size",
]

MATRIX_LABEL = {"q": "W_q", "k": "W_k", "v": "W_v", "o": "W_o", "ff_in": "W_ff_in", "ff_out": "W_ff_out"}


@dataclass
class Table:
    name: str
    title: str
    frame: pd.DataFrame  # display strings, index = row labels

    def markdown(self) -> str:
        header = [self.frame.index.name or ""] + [str(c) for c in self.frame.columns]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for label, row in self.frame.iterrows():
            lines.append("| " + " | ".join([str(label)] + [str(v) for v in row]) + " |")
        return "\n".join(lines) + "\n"

    def shown(self, results: Path, sweep: str) -> Path:
        """Written as markdown to the sweep's report (<results>/report/<sweep>/tables/<name>.md) and printed:
        what each analysis command beside `python -m analysis` ends with."""
        out = results / "report" / sweep / "tables" / f"{self.name}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.markdown())
        print(f"{self.markdown()}\n{out}")
        return out

    def latex(self) -> str:
        def esc(s) -> str:
            return (
                str(s).replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%").replace("±", "$\\pm$")
            )

        cols = "l" + "r" * len(self.frame.columns)
        lines = [
            f"% {self.title}",
            f"\\begin{{tabular}}{{{cols}}}",
            "\\toprule",
            " & ".join([esc(self.frame.index.name or "")] + [esc(c) for c in self.frame.columns]) + " \\\\",
            "\\midrule",
        ]
        for label, row in self.frame.iterrows():
            lines.append(" & ".join([esc(label)] + [esc(v) for v in row]) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        return self.frame.to_csv(lineterminator="\n")


class MixedSettings(ValueError):
    """A table cell would average runs that are not repeats of one setting."""


def _check_repeats(frame: pd.DataFrame, keys: list[str], name: str) -> None:
    """A cell may average seeds of one setting (same config but the seed), never different settings."""
    counts = frame.groupby(keys, dropna=False).setting.nunique()
    if (counts > 1).any():
        cell = counts[counts > 1].index[0]
        differing = _differing(frame[frame.set_index(keys).index.isin([cell])], set(keys))
        raise MixedSettings(
            f"table {name}: cell {cell} holds runs that differ in {', '.join(differing) or 'other config fields'}, "
            "not only in seed; analyse them apart (separate sweeps, or --sweep)"
        )


def _differing(runs: pd.DataFrame, shown: set[str]) -> list[str]:
    """The setting columns, other than those `shown`, in which the runs differ."""
    return [c for c in SETTING_COLUMNS if c not in shown and runs[c].astype(str).nunique() > 1]


def check_lines(frame: pd.DataFrame, by: list[str], column: str, name: str) -> None:
    """A line (or table block) over `column` may join runs that differ in `column` alone: raise
    MixedSettings naming what else differs (a model, a step budget, a learning rate)."""
    derived = {"model": {"model_params"}}.get(column, set())
    for key, runs in frame.groupby(by, dropna=False):
        differing = _differing(runs, {*by, column, *derived})
        if differing:
            raise MixedSettings(
                f"{name}: the runs of {key} differ in {', '.join(differing)} besides {column}; "
                "analyse them apart (separate sweeps, or --sweep)"
            )


def weight_type(targets: str) -> str:
    return ", ".join(MATRIX_LABEL.get(t, t) for t in targets.split(","))


def human(n: float) -> str:
    """Parameter counts as the papers print them: 4.7M, 37K, 175B."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def score(values: pd.Series) -> str:
    """Mean score in percent; ± standard deviation over seeds when there are several."""
    values = values.dropna()
    if values.empty:
        return "-"
    if len(values) == 1:
        return f"{100 * values.iloc[0]:.1f}"
    return f"{100 * values.mean():.1f} ± {100 * values.std(ddof=1):.1f} (n={len(values)})"


def measure(frame: pd.DataFrame) -> str:
    """What the cells hold: the tasks' primary test metrics, in percent."""
    return "Test " + ", ".join(sorted(frame.metric.dropna().unique())) + " (%)"


def method_label(row) -> str:
    """The method's own label for this setting (bench/methods); a method no longer registered, its name; a
    record without the keys its method's label reads (written by hand, or before the key existed), the
    method's name and the keys it has."""
    if row.method not in METHODS:
        return row.method + _base_and_optimizer(row)
    method = METHODS[row.method]
    try:
        return method.label(row) + _base_and_optimizer(row)
    except (TypeError, ValueError):  # a key the label formats is missing (NA)
        return Method.label(method, row) + _base_and_optimizer(row)


def _base_and_optimizer(row) -> str:
    """The base and the optimizer, where they are not the default (pre-trained weights in float, AdamW): QLoRA is
    LoRA on an nf4 base, full fine-tuning under GaLore another row than under AdamW, and a row on random weights
    (a speed check) says so."""
    quantize, optimizer = row.get("quantize"), row.get("optimizer")
    shown = ["random weights"] if row.get("weights") == "random" else []
    shown += [f"{quantize} base"] if isinstance(quantize, str) and quantize != "none" else []
    if isinstance(optimizer, str) and optimizer != "adamw" and METHODS.get(row.method, Method).optimizer is None:
        args = row.get("optimizer_args")
        shown.append(optimizer + (f" ({args})" if isinstance(args, str) and args else ""))
    return "".join(f" · {s}" for s in shown)


def rank_grid(ok: pd.DataFrame) -> Table | None:
    lora = ok[ok.method == "lora"]
    if lora.r.nunique() < 2 and lora.targets.nunique() < 2:
        return None
    _check_repeats(lora, ["task", "targets", "r"], "rank_grid")
    frame = lora.assign(weight_type=lora.targets.map(weight_type))
    grid = frame.pivot_table(index=["task", "weight_type"], columns="r", values="score", aggfunc=score, sort=True)
    # the paper's row order: fewer matrices first
    grid = grid.sort_index(key=lambda idx: idx.map(lambda v: (v.count(",") if isinstance(v, str) else 0, v)))
    grid.columns = [f"r={c:g}" for c in grid.columns]
    grid.index = [f"{task}: {wt}" for task, wt in grid.index]
    grid.index.name = "weight type"
    return Table("rank_grid", f"{measure(lora)} by LoRA rank and adapted weight type", grid.fillna("-"))


@dataclass
class _Entry:
    """A row of the methods table: a method's runs at its selected setting, or the majority class."""

    label: str
    runs: pd.DataFrame | None  # None: the majority-class baseline, which is no run
    results: list[dict] | None  # per-example test results of every run (None if any lacks them)

    @property
    def names(self) -> list[str]:
        return list(self.runs.run_id) if self.runs is not None else [self.label]

    def values(self, metric: str) -> pd.Series:
        if self.runs is None:
            return pd.Series([uncertainty.point(metric, self.results)])
        return self.runs.scores.map(lambda s: s.get(metric))

    def supports(self, metric: str) -> bool:
        return bool(self.results) and uncertainty.supports(metric, self.results[0])


def entry(label: str, runs: pd.DataFrame) -> _Entry:
    results = list(runs.per_example)
    return _Entry(label, runs, results if all(isinstance(r, dict) for r in results) else None)


def score_cells(e: _Entry, metric: str) -> dict:
    """A row's cells of one metric: the mean ± std over seeds, and the 95% bootstrap interval over test examples."""
    values = e.values(metric)
    return {
        f"{metric} %": f"{100 * values.mean():.1f}" + (f" ± {100 * values.std(ddof=1):.1f}" if len(values) > 1 else ""),
        f"{metric} 95% CI": _interval(*uncertainty.interval(metric, e.results, e.names)) if e.supports(metric) else "-",
    }


def _entries(frame: pd.DataFrame) -> list[_Entry]:
    entries = [entry(label, runs) for label, runs in frame.groupby("label", sort=False)]
    baseline = majority(frame)
    if baseline is not None:
        entries.append(_Entry(MAJORITY, None, [baseline]))
    return entries


MAJORITY = "majority class"


def majority(frame: pd.DataFrame) -> dict | None:
    """The majority-class baseline's per-example test results: the most frequent training label
    (every classification record keeps it) predicted for every test example."""
    for row in frame.itertuples():
        if pd.notna(row.majority_label) and isinstance(row.per_example, dict) and "gold" in row.per_example:
            return {**row.per_example, "predicted": [int(row.majority_label)] * len(row.per_example["gold"])}
    return None


def _budget(runs: pd.DataFrame | None) -> dict:
    """What a method's runs were trained on, averaged over its seeds."""

    def mean(column, fmt):
        values = runs[column].dropna() if runs is not None else ()
        return fmt(values.mean()) if len(values) else "-"

    steps = mean("steps", lambda v: f"{v:.0f}")
    if runs is not None and runs.best_step.notna().any():  # early stopping: the step whose weights were scored
        steps = f"{runs.best_step.mean():.0f} of {steps}"
    return {
        "steps": steps,
        "epochs": mean("epochs", lambda v: f"{v:.2f}"),
        "examples": mean("examples_seen", human),
        "tokens": mean("tokens_seen", human),
        "train s": mean("train_seconds", lambda v: f"{v:.0f}"),
    }


def _versus(entry: _Entry, best: _Entry, metric: str) -> str:
    """The paired difference from the best row, with its 95% bootstrap interval; n.s. where it holds zero."""
    if entry is best:
        return "best"
    if not (entry.supports(metric) and best.supports(metric)):
        return "-"
    try:
        difference, low, high = uncertainty.paired_difference(
            metric, entry.results, best.results, entry.names, best.names
        )
    except uncertainty.Unpairable as e:
        warnings.warn(str(e), stacklevel=2)
        return "not paired: different test sets"
    mark = "" if uncertainty.significant(low, high) else " n.s."
    return f"{100 * difference:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]{mark}"


def _learning_rate(runs: pd.DataFrame | None) -> dict:
    if runs is None or not runs.lr.iloc[0]:
        return {"lr": "-", "lr grid": "-"}
    grid = runs.lr_grid.iloc[0]
    return {
        "lr": f"{runs.lr.iloc[0]:g}" + (" (edge of grid)" if runs.lr_edge.iloc[0] else ""),
        "lr grid": f"{len(grid)}: {grid[0]:g}..{grid[-1]:g}" if len(grid) > 1 else "-",
    }


def methods_table(runs: pd.DataFrame, task: str, name: str = "methods") -> Table | None:
    """One row per method at its selected learning rate (bench/selection.py), and the majority
    class: each test metric as mean ± std over seeds with its 95% bootstrap interval over test
    examples, the paired difference from the best row, trainable parameters and the budget."""
    frame = select(runs[runs.task == task])
    if frame.method.nunique() < 2:
        return None
    frame = frame.assign(label=frame.apply(method_label, axis=1))
    _check_repeats(frame, ["label"], name)
    metrics = list(next(s for s in frame.scores if s))
    entries = _entries(frame)
    best = max(entries, key=lambda e: e.values(metrics[0]).mean())
    table = {}
    for e in sorted(entries, key=lambda e: e.runs.method_params.iloc[0] if e.runs is not None else -1):
        row = {**_learning_rate(e.runs), "n": len(e.names)}
        for metric in metrics:
            row.update(score_cells(e, metric))
        row["vs best (95% CI)"] = _versus(e, best, metrics[0])
        method, head = (e.runs.method_params.iloc[0], e.runs.head_params.iloc[0]) if e.runs is not None else (0, 0)
        if frame.forgetting.notna().any():  # decoder and T5 runs: the loss on general text, after minus before
            forgot = e.runs.forgetting.dropna() if e.runs is not None else ()
            row["forgetting (nats/token)"] = f"{forgot.mean():+.3f}" if len(forgot) else "-"
        table[e.label] = {
            **row,
            "trainable (method)": human(method),
            "trainable (+head)": human(method + head),
            **_budget(e.runs),
        }
    out = pd.DataFrame.from_dict(table, orient="index")
    out.index.name = "method"
    return Table(
        name,
        f"{measure(frame)} on {task} by method at its selected learning rate: mean ± std over n seeds, "
        "95% bootstrap intervals over test examples, and the paired difference from the best (n.s.: not significant)",
        out,
    )


def _interval(low: float, high: float) -> str:
    return f"[{100 * low:.1f}, {100 * high:.1f}]"


def is_reference(row) -> bool:
    """Plain LoRA on a float base under AdamW: what the memory table's ratios are to."""
    plain = all(row.get(k) in (None, v) or pd.isna(row.get(k)) for k, v in PLAIN_LORA.items())
    return row.method == "lora" and plain


PLAIN_LORA = {
    "quantize": "none",
    "optimizer": "adamw",
    "use_dora": False,
    "use_rslora": False,
    "init": "default",
    "lr_ratio": 1.0,
    "adalora": False,
}
# the memory table's measurements: column -> (record column, scale, format, also as a ratio to plain LoRA's)
MEASURED = {
    "tensor peak MiB": ("peak_memory_bytes", 2**-20, "{:,.1f}", True),
    "optimizer state MiB": ("state_at_peak_bytes", 2**-20, "{:,.1f}", False),  # LoRA's is next to nothing
    "process RSS MiB": ("process_peak_rss_bytes", 2**-20, "{:,.0f}", True),
    "s/step": ("median_step_seconds", 1, "{:.3f}", True),
}


def memory_table(runs: pd.DataFrame, task: str, name: str = "memory") -> Table | None:
    """Each setting of method, base and optimizer at its selected learning rate: its score with intervals, its
    trainable parameters, and its tensor peak (and the optimizer state in it), process peak and step time beside
    the estimate, each but the state as a ratio to plain LoRA's (a float base, AdamW; in float32 where it ran
    so, the lowest rank where there are several).
    Drawn where the runs differ in base or optimizer."""
    frame = select(runs[runs.task == task])
    if frame.empty or (frame.quantize.nunique() < 2 and frame.optimizer.nunique() < 2):
        return None
    frame = frame.assign(label=frame.apply(method_label, axis=1))
    _check_repeats(frame, ["label"], name)
    metric = frame.metric.dropna().iloc[0]
    # float32 before another precision (a GPU sweep's bf16), then the lowest rank
    reference = frame[frame.apply(is_reference, axis=1)]
    reference = reference.assign(other=reference.precision.fillna("fp32") != "fp32").sort_values(
        ["other", "method_params"]
    )
    base = reference[reference.label == reference.label.iloc[0]] if len(reference) else None
    table = {}
    for label, e in frame.groupby("label", sort=False):
        row = {"n": len(e), "lr": _learning_rate(e)["lr"], **score_cells(entry(label, e), metric)}
        row["trainable (method)"] = human(e.method_params.iloc[0])
        for shown, (column, scale, fmt, ratio) in MEASURED.items():
            mine = e[column].dropna().mean()
            row[shown] = "-" if pd.isna(mine) else fmt.format(mine * scale)
            if not ratio:
                continue
            ref = base[column].dropna().mean() if base is not None else float("nan")
            row[f"{shown.split()[0]} x LoRA"] = "-" if pd.isna(mine) or pd.isna(ref) else f"{mine / ref:.2f}"
        # the training step's estimate, as the tensor peak is the profiled training step's (not an evaluation's)
        estimate = e.estimate_parts.map(_training_step).dropna().mean()
        peak = e.peak_memory_bytes.dropna().mean()
        row["estimate MiB"] = "-" if pd.isna(estimate) else f"{estimate / 2**20:,.1f}"
        row["estimate / peak"] = "-" if pd.isna(estimate) or pd.isna(peak) else f"{estimate / peak:.2f}"
        used = e.utilisation.dropna()
        row["utilisation %"] = f"{100 * used.mean():.2f}" if len(used) else "-"
        row["timing shared"] = "yes" if e.shared_machine.fillna(False).astype(bool).any() else "no"
        table[label] = row
    out = pd.DataFrame.from_dict(table, orient="index").sort_values("tensor peak MiB", key=_mib)
    out.index.name = "setting"
    return Table(
        name,
        f"{measure(frame)} on {task} by method, base and optimizer at the selected learning rate: mean ± std over n "
        "seeds, 95% bootstrap interval over test examples; tensor peak, process peak RSS and median step time "
        "(means over seeds) with their ratio to plain LoRA (float base, AdamW); the fit estimate of a training step, "
        "made before loading "
        "(timing shared: another job used the CPUs, so its times are not clean)",
        out,
    )


def _training_step(parts) -> float | None:
    """The training step's bytes of an estimate's parts; None where a record has none (or a hand-edited one)."""
    try:
        return peaks(parts)["training step"]
    except (KeyError, TypeError):
        return None


def _mib(column: pd.Series) -> pd.Series:
    return pd.to_numeric(column.str.replace(",", ""), errors="coerce")


def _by(ok: pd.DataFrame, column: str, name: str, title: str, subset=None) -> Table | None:
    frame = ok if subset is None else ok[subset(ok)]
    # a table needs some task and method run at two values or more (not two methods at one each)
    if frame.empty or frame.groupby(["task", "method"])[column].nunique().max() < 2:
        return None
    _check_repeats(frame, ["task", "method", column], name)
    check_lines(frame, ["task", "method"], column, f"table {name}")
    table = (
        frame.groupby(["task", "method", column], sort=True)
        .agg(score=("score", score), method_params=("method_params", "first"), head_params=("head_params", "first"))
        .reset_index()
    )
    table = table.drop(columns=["method_params", "head_params"]).assign(**trainable(table))
    if pd.api.types.is_float_dtype(table[column]) and (table[column] % 1 == 0).all():
        table[column] = table[column].astype(int)  # counts read back as floats where other runs lack them
    table = table.set_index(column)
    return Table(name, f"{measure(frame)} {title}", table)


def tables(frame: pd.DataFrame) -> list[Table]:
    """Every table the runs of one sweep support, plus the list of all runs."""
    ok = frame[frame.status == "ok"]
    builders = [
        lambda: rank_grid(ok),
        *(
            lambda task=task: methods_table(frame, task, "methods" if ok.task.nunique() == 1 else f"methods_{task}")
            for task in sorted(ok.task.unique())
        ),
        lambda: _by(
            ok,
            "num_virtual_tokens",
            "prompt_length",
            "by number of virtual tokens",
            lambda f: f.method.isin(["prompt_tuning", "prefix_tuning"]),
        ),
        lambda: _by(ok, "init", "prompt_init", "by prompt initialisation", lambda f: f.method == "prompt_tuning"),
        lambda: _by(ok, "train_size", "data_size", "by training-set size"),
        lambda: _by(ok, "model", "model_scale", "by model"),
        *(
            lambda task=task: memory_table(frame, task, "memory" if ok.task.nunique() == 1 else f"memory_{task}")
            for task in sorted(ok.task.unique())
        ),
    ]
    found = []
    for build in builders:
        try:
            found.append(build())
        except MixedSettings as e:  # a wrong average is worse than a missing table
            warnings.warn(str(e), stacklevel=2)
    return [t for t in found if t is not None] + [runs_table(frame)]


def trainable(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Trainable parameters as every table shows them: the method's own, and with the task head that trains
    beside it."""

    def shown(values: pd.Series) -> pd.Series:
        return values.map(lambda v: "-" if pd.isna(v) else human(v))

    return {
        "trainable (method)": shown(frame.method_params),
        "trainable (+head)": shown(frame.method_params + frame.head_params),
    }


def runs_table(frame: pd.DataFrame) -> Table:
    runs = pd.DataFrame(
        {
            "status": frame.status,
            "method": frame.apply(method_label, axis=1),
            "task": frame.task,
            "train size": frame.train_size.map(lambda v: "-" if pd.isna(v) else f"{v:.0f}"),
            "lr": frame.lr.map(lambda v: "-" if pd.isna(v) or not v else f"{v:g}"),
            "seed": frame.seed,
            "steps": frame.steps.map(lambda v: "-" if pd.isna(v) else f"{v:.0f}"),
            "metric": frame.metric.fillna("-"),
            "validation %": frame.val_score.map(lambda v: "-" if pd.isna(v) else f"{100 * v:.1f}"),
            "score %": frame.score.map(lambda v: "-" if pd.isna(v) else f"{100 * v:.1f}"),
            "macro-F1 %": frame.macro_f1.map(lambda v: "-" if pd.isna(v) else f"{100 * v:.1f}"),
            **trainable(frame),
            "peak MiB": frame.peak_memory_bytes.map(lambda v: "-" if pd.isna(v) else f"{v / 2**20:.0f}"),
            "s/step": frame.median_step_seconds.map(lambda v: "-" if pd.isna(v) else f"{v:.2f}"),
            "stored KiB": frame.stored_bytes.map(lambda v: "-" if pd.isna(v) else f"{v / 2**10:.0f}"),
            "forgetting": frame.forgetting.map(lambda v: "-" if pd.isna(v) else f"{v:+.3f}"),
        }
    )
    # why a run did not end ok, in its first line
    runs["reason"] = [
        m.splitlines()[0][:160] if s != "ok" and isinstance(m, str) and m else ""
        for s, m in zip(frame.status, frame.error)
    ]
    runs.index = frame.run_id
    runs.index.name = "run"
    return Table("runs", "Every run in the sweep", runs)
