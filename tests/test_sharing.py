"""Kept adapters ready to share (bench/card.py: a hub-format model card with the command that reproduces the run)
and W&B as its users expect (bench/tracking.py's model artifact, tested in test_runner.py; analysis's summary run
of tables and figures, analysis/wandb_summary.py), on the tiny random BERT."""

import shlex

from analysis.__main__ import main as analysis_main
from bench import card, record
from bench.compose import compose, to_container
from bench.launch import launch
from tests.conftest import tiny_bert


def test_the_cards_command_reproduces_the_run_id(make_config, tiny_models):
    rec = launch(make_config(*tiny_bert(tiny_models), "method.r=4", "seed=1", "+train.optimizer_args.eps=1e-7"))
    assert rec.status == "ok", rec.error
    command = card.reproduce(rec.config)
    assert "+train.optimizer_args.eps=1e-07" in command and "method.r=4" in command and "results_dir" not in command
    overrides = shlex.split(command)[3:]  # after `python -m bench`
    assert record.run_id(to_container(compose([*overrides, f"results_dir={rec.config['results_dir']}"]))) == rec.run_id


def test_analysis_adds_the_score_over_seeds_to_the_cards_and_logs_tables_and_figures_to_wandb(
    make_config, tiny_models, tmp_path, capsys
):
    runs = [
        launch(make_config(*tiny_bert(tiny_models), "sweep_name=share", *extra))
        for extra in (["seed=0"], ["seed=1"], ["method=bitfit"])
    ]
    assert all(r.status == "ok" for r in runs), [r.error for r in runs]
    results = tmp_path / "results"
    lora = results / "share" / runs[0].run_id / "README.md"
    assert "over 2 seeds" not in lora.read_text()
    analysis_main(["--results", str(results), "--out", str(tmp_path / "report"), "--wandb", "offline"])
    assert "| over seeds | accuracy " in lora.read_text() and "% over 2 seeds; 95% interval [" in lora.read_text()
    assert "over seeds" not in (results / "share" / runs[2].run_id / "README.md").read_text()  # one seed only
    [summary] = (results / "share" / "wandb").glob("offline-run-*")
    media = {p.relative_to(summary / "files" / "media").parts[:2] for p in (summary / "files" / "media").rglob("*.*")}
    assert ("table", "tables") in media and ("images", "figures") in media
    tables = {p.name.split("_")[0] for p in (summary / "files" / "media" / "table" / "tables").iterdir()}
    assert "methods" in tables
    assert f"wandb sync {summary}" in capsys.readouterr().out
