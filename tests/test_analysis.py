"""Analysis on hand-written records: the expected cells, and byte-identical regeneration."""

import json
import shutil

import pytest

from analysis import tables
from analysis.__main__ import main as analysis_main
from analysis.figures import pareto_front
from bench import results as records
from bench.selection import select


def _record(
    folder,
    run_id,
    method="lora",
    accuracy=0.5,
    status="ok",
    seed=0,
    lr=1e-3,
    val=None,
    per_example=None,
    majority=None,
    quantize="none",
    optimizer="adamw",
    peak_mib=None,
    weights="pretrained",
    **method_keys,
):
    config = {
        "sweep_name": folder.name,
        "seed": seed,
        "model": {"name": "minilm-l6", "params": 22.7e6, "quantize": quantize, "weights": weights},
        "task": {"name": "tweets"},
        "method": {"name": method, "lr": lr, **method_keys},
        "train": {"batch_size": 32, "optimizer": optimizer, "optimizer_args": {}, "precision": "fp32"},
    }
    rec = {
        "run_id": run_id,
        "schema_version": 1,
        "status": status,
        "config": config,
        "error": None if status == "ok" else {"type": "OSError", "message": "no such model"},
    }
    if status == "ok":
        trainable = 1000 * method_keys.get("r", 1)
        rec.update(
            metrics={"split": "test", "size": 100, "accuracy": accuracy, "macro_f1": accuracy - 0.1},
            params={"total": 10**7, "trainable": trainable + 10, "method": trainable, "head": 10, "trainable_pct": 1.0},
            data={"train": {"size": 640}},
            time={"steps": 100, "median_step_seconds": 0.5, "train_seconds": 50},
            memory={
                "peak_bytes": round(2**20 * (peak_mib or 100 + method_keys.get("r", 0))),
                "measure": "profiler",
                "process_peak_rss_bytes": round(2**20 * 10 * (peak_mib or 100)),
            },
            estimate={  # its training step: 1.1x the peak, the largest part; its evaluation, more than the whole
                "bytes": round(2**20 * 2 * (peak_mib or 100)),
                "parts": {
                    **dict.fromkeys(["weights", "gradients", "optimizer_state", "optimizer_step"], 0),
                    "activations": round(2**20 * 1.1 * (peak_mib or 100)),
                    "evaluation": round(2**20 * 2 * (peak_mib or 100)),
                    "paged_optimizer_state": 0,
                },
            },
            size={"bytes": 4 * trainable},
            latency={"median_ms": 10.0},
            environment={"device": "cpu"},
        )
        rec["data"]["majority_label"] = majority
        if val is not None:
            rec["validation"] = [{"step": 50, "accuracy": val - 0.1}, {"step": 100, "final": True, "accuracy": val}]
        if per_example is not None:
            rec["per_example"] = per_example
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{run_id}.json").write_text(json.dumps(rec))


@pytest.fixture
def results(tmp_path):
    sweep = tmp_path / "results" / "lora_rank"
    _record(sweep, "a", accuracy=0.50, r=1, targets=["q"])
    _record(sweep, "b", accuracy=0.60, r=8, targets=["q"], seed=0)
    _record(sweep, "c", accuracy=0.70, r=8, targets=["q"], seed=1)
    _record(sweep, "d", accuracy=0.65, r=1, targets=["q", "k", "v", "o"])
    _record(sweep, "d2", accuracy=0.58, r=1, targets=["q", "v"])
    _record(sweep, "e", status="failed", r=64, targets=["q"])
    methods = tmp_path / "results" / "methods"
    _record(methods, "f", method="bitfit", accuracy=0.55)
    _record(methods, "g", method="lora", accuracy=0.62, r=8, targets=["q", "v"])
    return tmp_path / "results"


def test_rank_grid_cells(results):
    frame = records.load(results)
    assert len(frame) == 8 and list(frame.status).count("failed") == 1
    grid = tables.rank_grid(frame[(frame.sweep == "lora_rank") & (frame.status == "ok")]).frame
    assert list(grid.columns) == ["r=1", "r=8"]
    # the paper's order, fewer matrices first (not alphabetical: "W_q, W_k, ..." sorts before "W_q, W_v")
    assert list(grid.index) == ["tweets: W_q", "tweets: W_q, W_v", "tweets: W_q, W_k, W_v, W_o"]
    assert grid.loc["tweets: W_q", "r=1"] == "50.0"
    assert grid.loc["tweets: W_q", "r=8"] == "65.0 ± 7.1 (n=2)"  # mean of 60 and 70, sample std 7.07
    assert grid.loc["tweets: W_q, W_k, W_v, W_o", "r=8"] == "-"


def test_cells_never_average_different_settings(results):
    _record(results / "lora_rank", "h", accuracy=0.9, r=8, targets=["q"], lr=3e-3)
    frame = records.load(results)
    with pytest.raises(tables.MixedSettings, match=r"differ in lr"):
        tables.rank_grid(frame[(frame.sweep == "lora_rank") & (frame.status == "ok")])
    with pytest.warns(UserWarning, match="table rank_grid"):
        names = [t.name for t in tables.tables(frame[frame.sweep == "lora_rank"])]
    assert "rank_grid" not in names and "runs" in names


def test_methods_table_orders_by_parameters(results):
    frame = records.load(results)
    table = tables.methods_table(frame[frame.sweep == "methods"], "tweets").frame
    assert list(table.index) == ["BitFit", "LoRA (r=8; q,v)"]
    assert table.loc["LoRA (r=8; q,v)", "trainable (method)"] == "8K"
    assert table.loc["LoRA (r=8; q,v)", "trainable (+head)"] == "8.01K"
    assert table.loc["BitFit", "accuracy %"] == "55.0"
    # records from before per-example results: no interval and no paired difference, not an error
    assert table.loc["BitFit", "accuracy 95% CI"] == "-" and table.loc["BitFit", "vs best (95% CI)"] == "-"
    assert table.loc["LoRA (r=8; q,v)", "vs best (95% CI)"] == "best"
    assert table.loc["BitFit", "steps"] == "100" and table.loc["BitFit", "lr"] == "0.001"


def test_a_new_methods_own_keys_are_columns_and_its_label_without_naming_it_in_analysis(results):
    methods = results / "methods"
    _record(
        methods, "h", method="adapter", accuracy=0.6, kind="houlsby", size=64, reduction_factor=16, activation="relu"
    )
    _record(methods, "i", method="peft", accuracy=0.58, type="LOHA", args={"r": 4, "alpha": 8}, targets=["q", "v"])
    frame = records.load(results)
    adapter = frame[frame.run_id == "h"].iloc[0]
    assert (adapter.kind, adapter["size"]) == ("houlsby", 64)
    assert frame[frame.run_id == "i"].iloc[0].args == "alpha=8,r=4"
    table = tables.methods_table(frame[frame.sweep == "methods"], "tweets").frame
    assert "adapter (kind=houlsby; size=64; reduction_factor=16; activation=relu)" in table.index
    assert "peft (type=LOHA; args=alpha=8,r=4; targets=q,v)" in table.index


def _search(folder, method="lora", **runs):
    """Runs of one method at several learning rates: lr -> (validation, test accuracy[, seed])."""
    for i, (lr, (val, test, *seed)) in enumerate(runs.items()):
        _record(
            folder,
            f"{method}-{i}",
            method=method,
            lr=float(lr.replace("_", "-")),
            val=val,
            accuracy=test,
            seed=seed[0] if seed else 0,
            r=8,
            targets=["q", "v"],
        )


def test_selection_reads_validation_never_test(tmp_path):
    sweep = tmp_path / "results" / "lr_search"
    # the best test score (0.90, at 1e-3) is not the best validation score (0.70, at 3e-4)
    _search(sweep, **{"1e_4": (0.60, 0.55), "3e_4": (0.70, 0.62), "1e_3": (0.65, 0.90), "3e_3": (0.40, 0.30)})
    chosen = select(records.load(tmp_path / "results"))
    assert list(chosen.lr) == [3e-4] and not chosen.lr_edge.iloc[0]
    assert chosen.lr_grid.iloc[0] == (1e-4, 3e-4, 1e-3, 3e-3) and chosen.selection_score.iloc[0] == 0.70


def test_selection_at_the_edge_of_the_grid_is_flagged(tmp_path):
    sweep = tmp_path / "results" / "lr_search"
    _search(sweep, **{"1e_4": (0.60, 0.55), "3e_4": (0.65, 0.62), "1e_3": (0.70, 0.60)})
    _record(sweep, "probe", method="probe", lr=0.0, val=0.8, accuracy=0.75)
    table = tables.methods_table(records.load(tmp_path / "results"), "tweets").frame
    assert table.loc["LoRA (r=8; q,v)", "lr"] == "0.001 (edge of grid)"
    assert table.loc["LoRA (r=8; q,v)", "lr grid"] == "3: 0.0001..0.001"
    assert table.loc["LoRA (r=8; q,v)", "accuracy %"] == "60.0"  # the selected run's test score only
    assert table.loc["frozen features + classifier", "lr"] == "-"


def test_a_rate_that_diverged_counts_in_the_grid_not_in_the_choice(tmp_path):
    sweep = tmp_path / "results" / "lr_search"
    _search(sweep, **{"1e_4": (0.60, 0.55), "3e_4": (0.70, 0.62)})
    _record(sweep, "lora-diverged", lr=1e-3, status="diverged", r=8, targets=["q", "v"])
    frame = records.load(tmp_path / "results")
    assert frame.search.nunique() == 1  # a failed record is still part of its search
    chosen = select(frame)
    assert list(chosen.lr) == [3e-4] and chosen.lr_grid.iloc[0] == (1e-4, 3e-4, 1e-3) and not chosen.lr_edge.iloc[0]


def test_seeds_run_after_the_choice_cannot_change_it(tmp_path):
    sweep = tmp_path / "results" / "lr_search"
    # 3e-4 won on seed 0; its seeds 1 and 2 validate badly, which must not hand the choice to 1e-3
    _search(
        sweep,
        **{
            "1e_4": (0.60, 0.5),
            "3e_4": (0.70, 0.6),
            "1e_3": (0.65, 0.7),
            "3e_4 ": (0.30, 0.6, 1),
            "3e_4  ": (0.30, 0.6, 2),
        },
    )
    chosen = select(records.load(tmp_path / "results"))
    assert list(chosen.lr) == [3e-4] * 3 and sorted(chosen.seed) == [0, 1, 2]
    table = tables.methods_table(records.load(tmp_path / "results").assign(method="lora"), "tweets")
    assert table is None  # one method: no comparison


def _per_example(predicted, fingerprint="test-a", gold=(0, 1, 2, 2) * 50):
    return {"fingerprint": fingerprint, "gold": list(gold), "predicted": list(predicted)}


def test_intervals_significance_and_the_majority_baseline(tmp_path):
    sweep = tmp_path / "results" / "methods"
    gold = [0, 1, 2, 2] * 50
    _record(
        sweep, "lora", method="lora", r=8, targets=["q", "v"], accuracy=1.0, per_example=_per_example(gold), majority=2
    )
    almost = gold[:-2] + [0, 0]  # two mistakes of 200: not significantly worse
    _record(sweep, "bitfit", method="bitfit", accuracy=0.99, per_example=_per_example(almost), majority=2)
    table = tables.methods_table(records.load(tmp_path / "results"), "tweets").frame
    assert list(table.index) == ["majority class", "BitFit", "LoRA (r=8; q,v)"]
    assert table.loc["LoRA (r=8; q,v)", "accuracy 95% CI"] == "[100.0, 100.0]"
    assert table.loc["LoRA (r=8; q,v)", "vs best (95% CI)"] == "best"
    assert table.loc["BitFit", "vs best (95% CI)"].endswith(" n.s.")
    # the majority class predicts label 2 everywhere: right on half the examples, far below the best
    assert table.loc["majority class", "accuracy %"] == "50.0"
    assert table.loc["majority class", "vs best (95% CI)"].startswith("-50.0 [")
    assert not table.loc["majority class", "vs best (95% CI)"].endswith("n.s.")


def test_runs_on_different_test_sets_are_not_paired(tmp_path):
    sweep = tmp_path / "results" / "methods"
    gold = [0, 1, 2, 2] * 50
    _record(sweep, "lora", method="lora", r=8, targets=["q", "v"], accuracy=1.0, per_example=_per_example(gold))
    _record(sweep, "bitfit", method="bitfit", accuracy=0.5, per_example=_per_example(gold, fingerprint="test-b"))
    with pytest.warns(UserWarning, match="bitfit, lora were scored on different test sets"):
        table = tables.methods_table(records.load(tmp_path / "results"), "tweets").frame
    assert table.loc["BitFit", "vs best (95% CI)"] == "not paired: different test sets"


def test_markdown_and_latex(results):
    frame = records.load(results)
    table = tables.rank_grid(frame[(frame.sweep == "lora_rank") & (frame.status == "ok")])
    assert table.markdown().splitlines()[2] == "| tweets: W_q | 50.0 | 65.0 ± 7.1 (n=2) |"
    assert "tweets: W\\_q & 50.0 & 65.0 $\\pm$ 7.1 (n=2) \\\\" in table.latex()


def test_pareto_front():
    import pandas as pd

    points = pd.DataFrame({"method_params": [10, 20, 30, 40], "score": [0.5, 0.4, 0.7, 0.6]})
    assert list(pareto_front(points).method_params) == [10, 30]


def test_report_regenerates_byte_identical(results, tmp_path, capsys):
    out = tmp_path / "report"
    analysis_main(["--results", str(results), "--out", str(out)])
    first = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    analysis_main(["--results", str(results), "--out", str(out)])
    second = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert first == second
    names = {str(p) for p in first}
    assert {
        "index.html",
        "lora_rank/index.html",
        "lora_rank/tables/rank_grid.md",
        "lora_rank/tables/rank_grid.tex",
        "lora_rank/tables/rank_grid.csv",
        "lora_rank/figures/accuracy_vs_rank.png",
        "methods/figures/accuracy_vs_parameters.png",
        "methods/tables/methods.md",
    } <= names
    page = (out / "lora_rank" / "index.html").read_text()
    assert "65.0 ± 7.1 (n=2)" in page and "no such model" in page


def test_tables_show_each_tasks_primary_metric(tmp_path):
    # arithmetic reports answer exact match (and per operation), not accuracy
    sweep = tmp_path / "results" / "icl_vs_finetune"
    _record(sweep, "x", method="icl", shots=4)
    _record(sweep, "y", method="lora", r=8, targets=["q", "v"])
    for run_id, em in (("x", 0.25), ("y", 0.75)):
        path = sweep / f"{run_id}.json"
        rec = json.loads(path.read_text())
        rec["config"]["task"]["name"] = "arithmetic"
        rec["metrics"] = {
            "split": "test",
            "size": 200,
            "loss": 1.0,
            "answer_exact_match": em,
            "answer_exact_match/add": em,
        }
        path.write_text(json.dumps(rec))
    frame = records.load(tmp_path / "results")
    assert list(frame.metric) == ["answer_exact_match"] * 2 and list(frame.score) == [0.25, 0.75]
    table = tables.methods_table(frame, "arithmetic")
    assert table.title.startswith("Test answer_exact_match (%)")
    assert list(table.frame["answer_exact_match %"]) == ["25.0", "75.0"]  # icl (no parameters) first
    assert list(table.frame.index) == ["4-shot prompting", "LoRA (r=8; q,v)"]


def test_one_value_per_method_makes_no_by_table(results):
    # prefix tuning at 10 tokens beside prompt tuning at 20 is not a prompt-length experiment
    _record(results / "methods", "p", method="prefix_tuning", num_virtual_tokens=10)
    _record(results / "methods", "q", method="prompt_tuning", num_virtual_tokens=20)
    frame = records.load(results)
    names = [t.name for t in tables.tables(frame[frame.sweep == "methods"])]
    assert "prompt_length" not in names and "methods" in names
    _record(results / "methods", "q2", method="prompt_tuning", num_virtual_tokens=5)
    frame = records.load(results)
    assert "prompt_length" in [t.name for t in tables.tables(frame[frame.sweep == "methods"])]


def test_trainable_means_one_thing_in_every_table_and_failed_rows_say_why(results):
    _record(results / "lora_rank", "a2", accuracy=0.55, r=1, targets=["q"], seed=1)
    frame = records.load(results)
    shown = {t.name: t.frame for t in tables.tables(frame[frame.sweep == "lora_rank"])}
    runs = shown["runs"]
    assert runs.loc["b", "trainable (method)"] == "8K" and runs.loc["b", "trainable (+head)"] == "8.01K"
    assert runs.loc["e", "trainable (method)"] == "-" and runs.loc["e", "reason"] == "no such model"
    assert runs.loc["b", "reason"] == ""
    _record(results / "methods", "q", method="prompt_tuning", num_virtual_tokens=20)
    _record(results / "methods", "q2", method="prompt_tuning", num_virtual_tokens=5)
    frame = records.load(results)
    shown.update({t.name: t.frame for t in tables.tables(frame[frame.sweep == "methods"])})
    assert {"rank_grid", "runs", "methods", "prompt_length"} <= set(shown)
    for name, table in shown.items():
        # never the bare word, whose meaning differed by table; grids show scores only
        assert "trainable" not in table.columns and (name == "rank_grid" or "trainable (+head)" in table.columns), name


@pytest.mark.parametrize(
    "change, why",
    [
        (
            lambda r: r.update(metrics=["not", "a", "dict"]),
            "metrics=['not', 'a', 'dict'] is not valid: input should be a valid dictionary",
        ),
        (lambda r: r["metrics"].update(accuracy="high"), "metrics.accuracy='high' is not valid: a number"),
        (
            lambda r: r.update(status="<script>alert(1)</script>"),
            "status='<script>alert(1)</script>' is not valid: input should be 'ok'",
        ),
        (lambda r: r["config"].pop("method"), "a config with model, task and method names"),
        (lambda r: r.update(per_example=[1, 2]), "per_example=[1, 2] is not valid: input should be a valid dictionary"),
        (lambda r: r.update(schema_version="2"), "schema_version='2' is not valid: a number"),
        (lambda r: r.update(unknown_section={}), "unknown_section={} is not valid: extra inputs are not permitted"),
        (lambda r: r["metrics"].update(accuracy=int("9" * 400)), "is not valid: input should be less than or equal to"),
        (lambda r: r["metrics"].update(accuracy=-7.5), "metrics.accuracy=-7.5 is not valid: input should be greater"),
        (lambda r: r["metrics"].update(accuracy=float("inf")), "metrics.accuracy=inf is not valid: input should be"),
        (
            lambda r: r["time"].update(train_seconds=float("nan")),
            "time.train_seconds=nan is not valid: input should be",
        ),
    ],
)
def test_records_that_do_not_fit_the_schema_are_skipped_by_name(results, change, why, tmp_path):
    path = results / "methods" / "f.json"
    rec = json.loads(path.read_text())
    change(rec)
    path.write_text(json.dumps(rec))
    with pytest.warns(UserWarning, match=f"{path}: not a run record, skipped") as caught:
        frame = records.load(results)
    assert why in str(caught[0].message)
    assert "f" not in set(frame.run_id) and len(frame) == 7
    analysis_main(["--results", str(results), "--out", str(tmp_path / "report")])  # the report still builds


def test_the_sweep_is_the_folder_not_a_name_in_the_record(results, tmp_path):
    path = results / "methods" / "f.json"
    rec = json.loads(path.read_text())
    rec["config"]["sweep_name"] = "../../escaped"
    path.write_text(json.dumps(rec))
    out = tmp_path / "report"
    analysis_main(["--results", str(results), "--out", str(out)])
    assert set(records.load(results).sweep) == {"lora_rank", "methods"}
    assert not (tmp_path / "escaped").exists() and not (out.parent.parent / "escaped").exists()


def test_a_line_never_joins_runs_that_differ_in_more_than_its_axis(tmp_path):
    sweep = tmp_path / "results" / "data_size"
    for run_id, model, size in (("a", "minilm-l6", 100), ("b", "smollm2-135m", 200)):
        _record(sweep, run_id, method="lora", r=8, targets=["q", "v"])
        rec = json.loads((sweep / f"{run_id}.json").read_text())
        rec["config"]["model"]["name"], rec["data"]["train"]["size"] = model, size
        (sweep / f"{run_id}.json").write_text(json.dumps(rec))
    frame = records.load(tmp_path / "results")
    with pytest.warns(
        UserWarning, match=r"table data_size: the runs of \('tweets', 'lora'\) differ in model besides train_size"
    ):
        names = [t.name for t in tables.tables(frame)]
    assert "data_size" not in names


def test_task_names_from_records_are_escaped_in_the_page_and_safe_as_file_names(results, tmp_path):
    methods = results / "methods"
    for run_id, task in (("f", "<img src=x onerror=alert(1)>"), ("g", "a/b")):
        rec = json.loads((methods / f"{run_id}.json").read_text())
        rec["config"]["task"]["name"] = task
        (methods / f"{run_id}.json").write_text(json.dumps(rec))
    out = tmp_path / "report"
    analysis_main(["--results", str(results), "--out", str(out)])  # the report is written, not aborted
    page = (out / "methods" / "index.html").read_text()
    assert "<img src=x" not in page  # the markup is escaped wherever the name is shown
    figures = sorted(p.name for p in (out / "methods" / "figures").glob("*.png"))
    assert figures and all("/" not in name and "<" not in name for name in figures)
    assert not list(out.rglob("b.png")) and not (out / "methods" / "figures" / "accuracy_vs_parameters_a").exists()


def test_a_record_without_the_keys_its_label_reads_still_gets_a_row_and_a_report(results, tmp_path):
    shutil.rmtree(results / "lora_rank")  # the only LoRA run is the one without r, beside a BitFit run
    path = results / "methods" / "g.json"
    rec = json.loads(path.read_text())
    del rec["config"]["method"]["r"]
    path.write_text(json.dumps(rec))
    table = tables.methods_table(records.load(results), "tweets").frame
    assert list(table.index) == ["BitFit", "lora (targets=q,v)"]  # labelled with what the record holds
    analysis_main(["--results", str(results), "--out", str(tmp_path / "report")])  # the report is still written


def test_a_run_on_random_weights_is_its_own_row_and_says_so(tmp_path):
    sweep = tmp_path / "results" / "methods"
    lora = {"r": 8, "targets": ["q", "v"]}
    _record(sweep, "p0", accuracy=0.70, **lora)
    _record(sweep, "r0", accuracy=0.40, weights="random", **lora)
    _record(sweep, "b0", method="bitfit", accuracy=0.60)
    table = tables.methods_table(records.load(tmp_path / "results"), "tweets").frame
    assert sorted(table.index) == ["BitFit", "LoRA (r=8; q,v)", "LoRA (r=8; q,v) · random weights"]


@pytest.mark.parametrize(
    "args, message",
    [(["--sweep", "nosuch"], "--sweep nosuch: no such sweep"), (["--out", "FILE"], "is a file: expected a folder")],
)
def test_bad_analysis_arguments_are_one_line(results, tmp_path, capsys, args, message):
    (tmp_path / "FILE").write_text("")
    args = [str(tmp_path / "FILE") if a == "FILE" else a for a in args]
    with pytest.raises(SystemExit):
        analysis_main(["--results", str(results), *args])
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_memory_table_and_figure_rate_each_setting_against_plain_lora(tmp_path):
    sweep = tmp_path / "results" / "memory"
    lora = {"method": "lora", "r": 8, "targets": ["q", "v"], "use_dora": False, "init": "default", "lr_ratio": 1.0}
    _record(sweep, "l0", accuracy=0.70, peak_mib=100, **lora)
    _record(sweep, "l1", accuracy=0.72, peak_mib=100, seed=1, **lora)
    _record(sweep, "q0", accuracy=0.69, peak_mib=80, quantize="nf4", **lora)
    _record(sweep, "d0", accuracy=0.71, peak_mib=130, **{**lora, "use_dora": True})
    _record(sweep, "g0", method="full_ft", accuracy=0.73, peak_mib=300, optimizer="galore")
    _record(sweep, "f0", method="full_ft", accuracy=0.74, peak_mib=400)
    frame = records.load(tmp_path / "results")
    table = tables.memory_table(frame, "tweets").frame
    qlora = next(i for i in table.index if i.startswith("LoRA") and i.endswith(" · nf4 base"))
    plain = next(i for i in table.index if i.startswith("LoRA") and "·" not in i and "DoRA" not in i)
    galore = next(i for i in table.index if i.endswith(" · galore"))
    assert list(table.index)[0] == qlora and list(table.index)[-1] not in (qlora, plain, galore)  # by tensor peak
    assert table.loc[plain, ["n", "accuracy %", "tensor x LoRA", "process x LoRA"]].tolist() == [
        2,
        "71.0 ± 1.4",
        "1.00",
        "1.00",
    ]
    assert table.loc[qlora, "tensor x LoRA"] == "0.80" and table.loc[galore, "tensor x LoRA"] == "3.00"
    assert table.loc[qlora, "estimate / peak"] == "1.10"
    # a sweep of one base and one optimizer has no memory table
    assert tables.memory_table(frame[frame.quantize == "none"][frame.optimizer == "adamw"], "tweets") is None
    analysis_main(["--results", str(tmp_path / "results"), "--out", str(tmp_path / "report")])
    assert (tmp_path / "report" / "memory" / "figures" / "accuracy_vs_memory.png").stat().st_size > 0
    assert (tmp_path / "report" / "memory" / "tables" / "memory.md").read_text().count("\n") > 6
