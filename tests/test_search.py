"""python -m bench.search: the grids on seed 0, the choice on validation, the chosen rate on seeds."""

import json

import pytest

from bench.search import beyond, main
from tests.conftest import tiny_bert

TINY = [
    "tracking=none",
    "process=inline",
    "task.train_size=64",
    "task.val_size=32",
    "task.test_size=64",
    "train.max_steps=3",
    "train.batch_size=8",
    "train.eval_every=0",
    "train.latency_samples=1",
    "train.profile_memory=false",
]


@pytest.mark.slow
def test_search_runs_the_grid_then_the_selected_rate_on_seeds(tmp_path, tiny_models, capsys):
    code = main(
        [
            "--methods",
            "lora,probe",
            "--seeds",
            "2",
            "--extend",
            "0",
            f"results_dir={tmp_path}",
            "method.lr_grid=[1e-4,3e-3]",
            *TINY,
            *tiny_bert(tiny_models),
        ]
    )
    assert code == 0
    runs = [json.loads(p.read_text()) for p in (tmp_path / "lr_search").glob("*.json")]
    assert all(r["status"] == "ok" for r in runs)
    lora = [r for r in runs if r["config"]["method"]["name"] == "lora"]
    by_lr = {}
    for r in lora:
        by_lr.setdefault(r["config"]["method"]["lr"], []).append(r["config"]["seed"])
    # both rates on seed 0, then the one with the better validation accuracy on seeds 0 and 1
    seed0 = {
        lr: next(r for r in lora if r["config"]["method"]["lr"] == lr and r["config"]["seed"] == 0) for lr in by_lr
    }
    best = max(seed0, key=lambda lr: (seed0[lr]["validation"][-1]["accuracy"], -lr))
    assert set(by_lr) == {1e-4, 3e-3} and sorted(by_lr[best]) == [0, 1] and len(lora) == 3
    assert sorted(r["config"]["seed"] for r in runs if r["config"]["method"]["name"] == "probe") == [0, 1]
    out = capsys.readouterr().out
    assert f"lora: lr {best:g} of 0.0001, 0.003" in out and "STILL AT THE EDGE after --extend=0" in out


def test_a_step_beyond_an_edge_keeps_the_grids_spacing_there():
    assert beyond([1e-4, 1e-3], 1e-3) == pytest.approx(1e-2) and beyond([1e-4, 1e-3], 1e-4) == pytest.approx(1e-5)
    assert beyond([1e-4, 3e-4, 1e-3], 1e-3) == 3.33e-3  # to three significant digits


@pytest.mark.slow
def test_a_choice_at_the_edge_widens_the_grid_until_it_is_interior_or_the_limit(tmp_path, tiny_models, capsys):
    args = ["--methods", "lora", "--seeds", "1", "--extend", "2", f"results_dir={tmp_path}", *TINY]
    assert main([*args, "method.lr_grid=[1e-5,1e-4]", *tiny_bert(tiny_models)]) == 0
    runs = [json.loads(p.read_text()) for p in (tmp_path / "lr_search").glob("*.json")]
    tried = sorted(r["config"]["method"]["lr"] for r in runs)
    out = capsys.readouterr().out
    steps = out.count(" is at the edge of ")
    assert len(tried) == 2 + steps and steps <= 2 and len(runs) == len(set(tried))  # seed 0 only
    grid = [1e-5, 1e-4]
    for line in out.splitlines():  # each step one spacing past the edge the choice sat at then
        if " is at the edge of " in line:
            edge, step = float(line.split("lr ")[1].split(" ")[0]), float(line.split("trying ")[1])
            assert step == pytest.approx(beyond(grid, edge), rel=1e-3)
            grid = sorted([*grid, step])
    assert tried == pytest.approx(grid, rel=1e-3)
    assert steps == 2 or "STILL AT THE EDGE" not in out


@pytest.mark.slow
def test_tpe_searches_the_grids_range_on_a_log_scale_and_selects_as_the_grid_does(tmp_path, tiny_models, capsys):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install -e '.[search]'")
    args = ["--methods", "lora", "--sampler", "tpe", "--trials", "3", "--seeds", "2", f"results_dir={tmp_path}", *TINY]
    assert main([*args, "method.lr_grid=[1e-4,1e-2]", *tiny_bert(tiny_models)]) == 0
    runs = [json.loads(p.read_text()) for p in (tmp_path / "lr_search").glob("*.json")]
    seed0 = {r["config"]["method"]["lr"]: r for r in runs if r["config"]["seed"] == 0}
    assert len(seed0) == 3 and all(1e-4 <= lr <= 1e-2 for lr in seed0) and len(runs) == 4  # 3 trials, 1 more seed
    best = max(seed0, key=lambda lr: (seed0[lr]["validation"][-1]["accuracy"], -lr))
    assert [r["config"]["method"]["lr"] for r in runs if r["config"]["seed"] == 1] == [best]
    out = capsys.readouterr().out
    assert "hydra/sweeper=optuna" in out and "hydra.sweeper.sampler.n_startup_trials=2" in out  # 2 random, 1 TPE
    assert main([*args, "method.lr_grid=[1e-4,1e-2]", *tiny_bert(tiny_models)]) == 0  # seeded: resumes, runs nothing
    assert len(list((tmp_path / "lr_search").glob("*.json"))) == 4


@pytest.mark.slow
def test_a_method_that_does_not_apply_is_no_failure(tmp_path, tiny_models, capsys):
    # few-shot prompting needs a model that reads prompts; BERT is an encoder
    assert main(["--methods", "icl", "--seeds", "2", f"results_dir={tmp_path}", *TINY, *tiny_bert(tiny_models)]) == 0
    assert "icl: not applicable here (few-shot prompting needs a model that reads prompts" in capsys.readouterr().out
    [rec] = [json.loads(p.read_text()) for p in (tmp_path / "lr_search").glob("*.json")]
    assert rec["status"] == "not_applicable"


@pytest.mark.parametrize(
    "args, message",
    [
        (["seed=1"], "seed, method and method.lr are set by the search"),
        (["method.lr=1e-3"], "seed, method and method.lr are set by the search"),
        (["--methods", "lora,nope"], "--methods: unknown nope; expected names from:"),
        (["--seeds", "0"], "--seeds=0: expected 1 or more"),
        (
            ["--methods", "lora", "method.lr_grid=[]"],
            "method.lr_grid=[] is not valid: expected a non-empty grid of learning rates for lora",
        ),
    ],
)
def test_bad_arguments_stop_before_any_run(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit):
        main([*args, f"results_dir={tmp_path}"])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "lr_search").exists()


def test_a_bad_override_stops_the_search_before_its_first_step(capsys):
    from bench.search import main

    with pytest.raises(SystemExit):
        main(["--methods", "lora", "sweep_name=../x"])
    err = capsys.readouterr()
    assert "sweep_name='../x' is not valid" in err.err and "== 1." not in err.out
