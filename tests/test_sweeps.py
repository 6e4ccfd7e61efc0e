"""Sweep files compose into the expected job lists; sweeps resume, survive failures, and run
under the joblib and submitit launchers."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from bench.compose import CONF
from bench.validate import validate
from tests.conftest import FAST, tiny_bert

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted(p.stem for p in (CONF / "sweep").glob("*.yaml"))

EXPECTED_JOBS = {
    "lora_rank": 15,  # r in {1,2,4,8,64} x {Wq; Wq,Wv; Wq,Wk,Wv,Wo}
    "methods": 8,
    "prompt_length": 5,
    "prompt_init": 2,
    "data_size": 6,
    "model_scale": 6,  # 2 models x 3 methods
    "icl_vs_finetune": 2,
    "memory": 17,  # conf/recipe: LoRA, its variants, QLoRA (and LoftQ), full FT under six optimizers, LOMO
    # the GPU-sized variants (hub models and data)
    "lora_rank_paper": 15,
    "methods_paper": 16,  # 8 methods x 2 tasks
    "prompt_length_paper": 5,
    "prompt_init_paper": 2,
    "data_size_paper": 10,
    "model_scale_paper": 10,  # 5 sizes x prompt tuning and LoRA
    "model_scale_full_ft_paper": 5,  # the same sizes' full fine-tuning, with Adafactor to fit one GPU at XXL
    "icl_vs_finetune_paper": 2,
    "memory_paper": 17,
}
# sweeps that write into another sweep's results folder, so that its tables show them together
SHARES_FOLDER = {"model_scale_full_ft_paper": "model_scale_paper"}
# hub data the tests read from their own files in the official layout instead
LOCAL_DATA = {"rte": "superglue", "boolq": "superglue", "sst2": "sst2"}


def jobs_of(cfg) -> list[list[str]]:
    """The job list Hydra's basic sweeper makes of a composed sweep."""
    params = cfg.hydra.sweeper.params
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def test_every_sweep_has_an_expected_job_count():
    assert set(SWEEPS) == set(EXPECTED_JOBS)


# the GPU-sized variants and the larger grids compose the same way with more jobs: the slow tier checks them
SLOW_SWEEPS = {s for s in SWEEPS if s.endswith("_paper")} | {
    "lora_rank",
    "model_scale",
    "methods",
    "data_size",
    "memory",
}


@pytest.mark.parametrize("sweep", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW_SWEEPS else s for s in SWEEPS])
def test_sweep_composes_and_every_job_validates(make_config, sweep):
    cfg = make_config(f"+sweep={sweep}", fast=False, hydra=True)
    assert cfg.sweep_name == SHARES_FOLDER.get(sweep, sweep) and str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    jobs = jobs_of(cfg)
    assert len(jobs) == EXPECTED_JOBS[sweep]
    assert len({tuple(j) for j in jobs}) == len(jobs)
    for job in jobs:
        task = make_config(f"+sweep={sweep}", *job, fast=False).task.name
        local = [f"task.data_dir={REPO / 'tests' / 'fixtures' / LOCAL_DATA[task]}"] if task in LOCAL_DATA else []
        reason = validate(make_config(f"+sweep={sweep}", *job, *local, fast=False))
        # few-shot prompting does not apply to encoders; everything else in a sweep must run
        assert reason is None or ("method=icl" in job and "encoder" in reason), (job, reason)


def test_lora_rank_jobs_are_the_papers_grid(make_config):
    jobs = jobs_of(make_config("+sweep=lora_rank", hydra=True))
    assert {tuple(j) for j in jobs} == {
        (f"method.r={r}", f"method.targets={t}") for r in (1, 2, 4, 8, 64) for t in ("[q]", "[q,v]", "[q,k,v,o]")
    }


def _bench(tmp_path, tiny_models, *args, expect: int = 0):
    """`python -m bench` on the tiny random BERT: these tests are of sweeps and launchers, not of accuracy."""
    out = subprocess.run(
        # flags first: Hydra's argument parser takes no flag after the overrides
        [
            sys.executable,
            "-m",
            "bench",
            *[a for a in args if a.startswith("-")],
            *FAST,
            *tiny_bert(tiny_models),
            f"results_dir={tmp_path}/results",
            *[a for a in args if not a.startswith("-")],
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == expect, out.stderr[-3000:]
    return out


def _records(tmp_path, sweep) -> list[dict]:
    return [json.loads(p.read_text()) for p in (tmp_path / "results" / sweep).glob("*.json")]


def _statuses(tmp_path, sweep):
    return {r["run_id"]: r["status"] for r in _records(tmp_path, sweep)}


@pytest.mark.slow
def test_command_line_narrows_a_sweep_and_a_rerun_resumes(tmp_path, tiny_models):
    # a command-line value for a swept key overrides the sweep's list
    _bench(tmp_path, tiny_models, "+sweep=lora_rank", "method.r=1", "method.targets=[q]")
    first = _statuses(tmp_path, "lora_rank")
    assert list(first.values()) == ["ok"]
    # the same sweep widened: the finished run is skipped, only the new one runs
    out = _bench(tmp_path, tiny_models, "+sweep=lora_rank", "method.r=1", "method.targets=[q],[v]")
    assert out.stdout.count("skip:") == 1
    assert len(_statuses(tmp_path, "lora_rank")) == 2


@pytest.mark.slow
def test_failing_job_leaves_the_others_intact(tmp_path, tiny_models):
    # the corpus size is known only once the data loads: the first job fails at run time
    # every job runs, then the sweep exits 1 for the failed one
    _bench(tmp_path, tiny_models, "-m", "sweep_name=mixed", "task.test_size=40000,32", expect=1)
    by_size = {r["config"]["task"]["test_size"]: r for r in _records(tmp_path, "mixed")}
    assert by_size[32]["status"] == "ok"
    assert by_size[40000]["status"] == "failed" and "task.test_size=40000" in by_size[40000]["error"]["message"]


@pytest.mark.slow
def test_bad_value_in_a_sweep_is_recorded_and_the_sweep_goes_on(tmp_path, tiny_models):
    _bench(tmp_path, tiny_models, "-m", "sweep_name=mixed", "method.r=0,2", expect=1)
    by_rank = {r["config"]["method"]["r"]: r for r in _records(tmp_path, "mixed")}
    assert by_rank[2]["status"] == "ok"
    assert by_rank[0]["status"] == "failed" and by_rank[0]["error"]["type"] == "ConfigError"


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher, concurrent",
    [(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], 2), (["hydra/launcher=submitit_local"], None)],
)
def test_parallel_launchers_mark_shared_timings(tmp_path, tiny_models, launcher, concurrent):
    _bench(tmp_path, tiny_models, "-m", *launcher, "sweep_name=parallel", "method=bitfit,ia3")
    records = _records(tmp_path, "parallel")
    assert sorted(r["config"]["method"]["name"] for r in records) == ["bitfit", "ia3"]
    assert all(r["status"] == "ok" for r in records)
    assert all(r["time"]["concurrent_jobs"] == concurrent and r["time"]["shared_machine"] for r in records)


def test_slurm_preset_composes(make_config):
    launcher = make_config("hydra/launcher=slurm", "hydra.launcher.partition=gpu", hydra=True).hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 240)


def test_launchers_that_share_a_machine_are_marked():
    from omegaconf import OmegaConf

    from bench.__main__ import concurrent_jobs

    def launcher(target, **keys):
        return OmegaConf.create({"launcher": {"_target_": target, **keys}})

    assert concurrent_jobs(launcher("hydra._internal.core_plugins.basic_launcher.BasicLauncher")) == 1
    assert (
        concurrent_jobs(launcher("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", n_jobs=2)) == 2
    )
    assert concurrent_jobs(launcher("hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher")) is None
    assert concurrent_jobs(launcher("hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher")) is None
    assert concurrent_jobs(launcher("hydra_plugins.hydra_ray_launcher.ray_aws_launcher.RayAWSLauncher")) is None
    assert concurrent_jobs(launcher("hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher")) == 1
