"""Bad input fails with the key, the value and what is accepted, before any weight loads."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from bench import record
from bench.compose import to_container
from bench.errors import ConfigError
from bench.launch import launch
from bench.validate import ResultsFolderCheck, validate

REPO = Path(__file__).resolve().parents[1]


def test_default_config_is_valid(make_config):
    cfg = make_config(fast=False)
    assert validate(cfg) is None
    assert (cfg.model.name, cfg.task.name, cfg.method.name, cfg.method.r, list(cfg.method.targets)) == (
        "minilm-l6",
        "tweets",
        "lora",
        8,
        ["q", "v"],
    )
    assert cfg.tracking.backend == "wandb" and cfg.tracking.mode == "offline" and cfg.process == "fresh"


def test_unknown_method_lists_the_options(make_config):
    with pytest.raises(ConfigCompositionException) as e:
        make_config("method=adapterz")
    message = str(e.value)
    assert "method/adapterz" in message and "lora" in message and "prefix_tuning" in message


def test_unknown_task_lists_the_options(make_config):
    with pytest.raises(ConfigCompositionException) as e:
        make_config("task=boolqq")
    assert "task/boolqq" in str(e.value) and "tweets" in str(e.value)


@pytest.mark.parametrize("r", [0, -4])
def test_rank_must_be_positive(make_config, r):
    with pytest.raises(ConfigError, match=rf"method.r={r} is not valid: expected a rank >= 1"):
        validate(make_config(f"method.r={r}"))


def test_target_the_architecture_lacks(make_config):
    with pytest.raises(ConfigError) as e:
        validate(make_config("method.targets=[q,w]"))
    assert "method.targets=['q', 'w']" in str(e.value)
    assert "ff_in, ff_out, k, o, q, v" in str(e.value) and "no 'w'" in str(e.value)


def test_ia3_targets_checked_too(make_config):
    with pytest.raises(ConfigError, match="method.targets"):
        validate(make_config("method=ia3", "method.targets=[]"))


def test_mistyped_value_names_key_and_value(make_config):
    with pytest.raises(ConfigCompositionException) as e:
        make_config("method.r=abc")
    cause = e.value.__cause__
    assert isinstance(cause, ValidationError)
    assert "abc" in str(cause) and "method.r" in str(cause)


def test_unknown_key_is_refused(make_config):
    with pytest.raises(ConfigCompositionException) as e:
        make_config("method.rank=4")
    assert "rank" in str(e.value.__cause__)


def test_method_keys_belong_to_their_method(make_config):
    # prompt tuning has no rank: the typed schema per method catches a key from another method
    with pytest.raises(ConfigCompositionException):
        make_config("method=prompt_tuning", "method.r=4")


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.max_steps=0", "train.max_steps"),
        ("train.batch_size=0", "train.batch_size"),
        ("train.warmup_ratio=1.5", "train.warmup_ratio"),
        ("method.lr=0", "method.lr"),
        ("method.dropout=1.0", "method.dropout"),
        ("tracking.mode=sometimes", "tracking.mode"),
        ("process=thread", "process"),
        ("model.dtype=int3", "model.dtype"),
        ("model.dtype=bfloat16", "model.dtype"),  # the whole model cast, trained weights too: train.precision instead
        ("train.precision=fp8", "train.precision"),
        ("train.memory_limit_gib=0", "train.memory_limit_gib"),
    ],
)
def test_value_checks_name_the_key(make_config, override, key):
    with pytest.raises(ConfigError) as e:
        validate(make_config(override))
    assert e.value.key == key and str(e.value).startswith(f"{key}=")


@pytest.mark.parametrize("name", ["../..", "..", ".", "a/b", "/tmp/x", ".hidden", "'with space'"])
def test_sweep_name_is_a_plain_folder_name(make_config, name, tmp_path):
    with pytest.raises(ConfigError) as e:
        validate(make_config(f"sweep_name={name}"))
    assert e.value.key == "sweep_name" and "a plain name" in str(e.value)
    assert not list((tmp_path / "results").glob("**/*"))  # nothing written anywhere
    validate(make_config("sweep_name=my_sweep-2.1"))


@pytest.mark.parametrize(
    "override, key, accepted",
    [
        ("method.r=5000", "method.r", "a rank <= 384, the model's width"),
        ("train.batch_size=1000000", "train.batch_size", "a number <= 65,536"),
        ("train.max_steps=1000000000000", "train.max_steps", "a number <= 100,000,000"),
    ],
)
def test_absurd_sizes_stop_before_loading(make_config, override, key, accepted):
    with pytest.raises(ConfigError) as e:
        validate(make_config(override))
    assert e.value.key == key and accepted in str(e.value)


def test_prompt_must_fit_the_models_positions(make_config):
    # MiniLM has 512 positions; the 64 input tokens of tweets leave room for 448 virtual tokens
    validate(make_config("method=prompt_tuning", "method.num_virtual_tokens=448"))
    with pytest.raises(
        ConfigError, match=r"method.num_virtual_tokens=100000 is not valid: expected at most 448: the prompt"
    ):
        validate(make_config("method=prompt_tuning", "method.num_virtual_tokens=100000"))


@pytest.mark.parametrize(
    "overrides, key, accepted",
    [
        # MiniLM's table holds 512 positions
        (["task.max_length=2000"], "task.max_length", "at most 512: task.max_length=2000 input tokens must fit"),
        (["method=prompt_tuning", "task.max_length=600"], "task.max_length", "at most 492:"),  # after 20 virtual
        (["method=prompt_tuning", "task.max_length=500"], "method.num_virtual_tokens", "at most 12: the prompt"),
        # RoBERTa's 514 rows include two below its first position
        (["model=roberta-base", "mode=count", "task.max_length=513"], "task.max_length", "at most 512:"),
        # a decoder's completion follows its prompt: arithmetic's 256 tokens of it leave 768 of GPT-2's 1024
        (
            ["model=gpt2", "method=bitfit", "mode=count", "task=arithmetic", "task.max_length=800"],
            "task.max_length",
            "at most 768",
        ),
    ],
)
def test_lengths_must_fit_the_models_positions(make_config, overrides, key, accepted):
    with pytest.raises(ConfigError) as e:
        validate(make_config(*overrides))
    assert e.value.key == key and accepted in str(e.value)


def test_rotary_and_relative_positions_set_no_length_limit(make_config):
    validate(make_config("model=flan-t5-small", "mode=count", "task=arithmetic", "task.max_length=4096"))
    validate(make_config("model=smollm2-135m", "mode=count", "task=arithmetic", "task.max_length=16384"))


def test_the_weights_folder_defines_the_sizes_not_the_preset(make_config, tiny_models):
    # without the preset's written architecture, the package's config.json still says MiniLM is 384 wide
    with pytest.raises(ConfigError, match=r"method.r=5000 is not valid: expected a rank <= 384"):
        validate(make_config("model.config=null", "method.r=5000"))
    # a local folder as hub id: its own config.json (the tiny GPT-2's 256 positions), not GPT-2's 1024
    tiny = ["model=gpt2", "method=bitfit", "model.source=hub", f"model.hub_id={tiny_models['gpt2']}"]
    validate(make_config(*tiny, "task.max_length=240"))
    with pytest.raises(ConfigError, match=r"task.max_length=250 is not valid: expected at most 240: .* 256 positions"):
        validate(make_config(*tiny, "task.max_length=250"))


def test_a_model_folder_without_its_config_is_refused(make_config, tmp_path):
    empty = tmp_path / "empty_model"
    empty.mkdir()
    with pytest.raises(
        ConfigError, match=r"model.hub_id='.*empty_model' is not valid: expected a hub id, or a model folder"
    ):
        validate(make_config("model.source=hub", f"model.hub_id={empty}"))


def test_steps_or_epochs_not_both(make_config):
    with pytest.raises(ConfigError, match="exactly one of train.max_steps and train.epochs"):
        validate(make_config("train.epochs=1"))
    assert validate(make_config("train.epochs=1", "train.max_steps=null")) is None


def test_unwritable_results_folder(make_config, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError) as e:
        validate(make_config(f"results_dir={blocker}/results"))
    assert e.value.key == "results_dir" and "a folder this user can create and write" in str(e.value)


def test_bitfit_without_biases_is_recorded_not_applicable(make_config, tmp_path):
    # SmolLM2 (Llama architecture) has no bias terms; nothing is loaded to find that out
    cfg = make_config("model=smollm2-135m", "method=bitfit")
    rec = launch(cfg)
    assert rec.status == "not_applicable"
    assert "llama architecture has none" in rec.error.message
    stored = json.loads(next((tmp_path / "results" / "default").glob("*.json")).read_text())
    assert stored["status"] == "not_applicable" and stored["run_id"] == rec.run_id


def _bench(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.slow  # starts python -m bench
def test_cli_rejects_bad_value_before_loading(tmp_path):
    out = _bench("method.r=0", f"results_dir={tmp_path}", "tracking=none")
    assert out.returncode != 0
    assert "error: method.r=0 is not valid: expected a rank >= 1" in out.stderr
    assert not list(tmp_path.rglob("*.json"))  # nothing ran, nothing recorded


@pytest.mark.slow
def test_cli_exits_non_zero_when_the_run_fails(tmp_path):
    args = (
        "model.source=hub",
        "model.hub_id=peft-bench/no-such-model",
        f"results_dir={tmp_path}",
        "tracking=none",
        "process=inline",
    )
    out = _bench(*args)
    assert out.returncode == 1 and ": failed" in out.stdout
    again = _bench(*args)  # the failed record is skipped, and still not a success
    assert again.returncode == 1 and "skip:" in again.stdout


@pytest.mark.slow  # starts python -m bench
@pytest.mark.parametrize("sweep", [False, True])
def test_cli_checks_the_results_folder_before_hydra_writes_in_it(tmp_path, sweep):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = _bench(*(["-m"] if sweep else []), f"results_dir={blocker}", "tracking=none")
    assert out.returncode == 1
    assert (
        f"error: results_dir='{blocker}/default' is not valid: expected a folder this user can create and write"
        in out.stderr
    )
    assert "Traceback" not in out.stderr


def test_hydras_chdir_is_refused_before_the_run_starts(make_config):
    # with it, results_dir and task.path would mean folders inside the log folder: reruns would never find a record
    cfg = make_config("hydra.job.chdir=true", hydra=True)
    with pytest.raises(SystemExit, match="error: hydra.job.chdir=True is not valid: expected false: records go to"):
        ResultsFolderCheck().on_run_start(cfg)
    ResultsFolderCheck().on_run_start(make_config(hydra=True))


@pytest.mark.slow  # starts python -m bench
def test_sweep_runs_every_job_then_exits_non_zero_when_one_failed(tmp_path):
    # job 0 is invalid (recorded failed), job 1 is recorded not_applicable without loading a model
    out = _bench(
        "-m", "model=smollm2-135m", "method=bitfit", "method.lr=0,1e-3", f"results_dir={tmp_path}", "tracking=none"
    )
    assert out.returncode == 1
    assert "JobFailed: invalid configuration: method.lr=0.0 is not valid" in out.stderr
    statuses = sorted(json.loads(p.read_text())["status"] for p in (tmp_path / "default").glob("*.json"))
    assert statuses == ["failed", "not_applicable"]


@pytest.mark.slow  # starts python -m bench
def test_cli_rejects_malformed_override(tmp_path):
    out = _bench("method.r=", "method.targets=[q,", f"results_dir={tmp_path}")
    assert out.returncode != 0
    assert "error: malformed override 'method.targets=[q,'" in out.stderr


@pytest.mark.slow  # starts python -m bench
def test_cli_help_shows_groups_and_options():
    out = _bench("--help")
    assert out.returncode == 0
    for group in ("model:", "task:", "method:", "train:", "tracking:"):
        assert group in out.stdout
    for option in ("lora", "prefix_tuning", "prompt_tuning", "ia3", "bitfit", "full_ft", "minilm-l6", "tweets"):
        assert option in out.stdout
    # the options a user can choose, not the schemas that type them
    assert (
        "method: adapter, bitfit, diff_pruning," in out.stdout and "schema" not in out.stdout.split("== Config ==")[0]
    )
    chosen = _bench("method=ia3", "--help")
    assert "\nmethod:\n  name: ia3\n" in chosen.stdout and "Examples:" in chosen.stdout
    assert _bench("method=nosuch", "--help").returncode == 1
    # with another of Hydra's flags, one that takes a value, Hydra's own help answers
    with_flag = _bench("--cfg", "job", "--help")
    assert with_flag.returncode == 0 and "== Configuration groups ==" in with_flag.stdout, with_flag.stderr[-1000:]


def test_local_source_needs_its_package(make_config):
    with pytest.raises(ConfigError) as e:
        validate(make_config("model.source=local", "model.package=no_such_package"))
    assert e.value.key == "model.source" and "(no_such_package) is not installed" in str(e.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.max_grad_norm=nan", "train.max_grad_norm"),
        ("train.weight_decay=nan", "train.weight_decay"),
        ("method.lr=inf", "method.lr"),
        ("method.lr_grid=[1e-3,nan]", "method.lr_grid[1]"),
        ("train.max_steps=null train.epochs=inf", "train.epochs"),
        ("train.warmup_ratio=-inf", "train.warmup_ratio"),
    ],
)
def test_nan_and_infinity_are_refused_in_every_number(make_config, override, key):
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}=(nan|inf|-inf) is not valid: expected a finite number"):
        validate(make_config(*override.split()))


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["train.max_steps=null", "train.epochs=1e9"], "train.epochs"),
        (["train.max_steps=null", "train.epochs=50000", "task.train_size=100000"], "train.epochs"),
        (["train.latency_samples=1000000000"], "train.latency_samples"),
        (["train.eval_every=1000000000"], "train.eval_every"),
        (["task.max_length=1000000000"], "task.max_length"),
        (["task.val_size=10000000000"], "task.val_size"),
        (["seed=-1"], "seed"),
    ],
)
def test_every_count_has_an_upper_bound_checked_before_loading(make_config, overrides, key):
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}="):
        validate(make_config(*overrides))


@pytest.mark.parametrize("name", ["../../escaped/x", "a/b", ".hidden", "", "x" * 300])
def test_a_model_name_that_is_not_one_path_component_is_refused(make_config, tmp_path, name):
    with pytest.raises(ConfigError, match="^model.name=.* is not valid: expected a plain name"):
        validate(make_config(f"model.name='{name}'"))
    config = to_container(make_config(f"model.name='{name}'"))
    with pytest.raises(ConfigError, match="^model.name="):
        record.path_for(config)  # nor can any caller build a path from it
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()


def test_a_sweep_recording_a_bad_name_writes_nothing_outside_the_store(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "-m",
            "tracking=none",
            f"results_dir={tmp_path}/R",
            "model.name=../../escaped/x",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.returncode != 0 and "model.name='../../escaped/x' is not valid" in out.stderr
    assert not (tmp_path / "escaped").exists() and not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["tracking=wandb", "tracking.project=a/b"], "tracking.project"),
        (["tracking=wandb", f"tracking.tags=[{'x' * 300}]"], "tracking.tags"),
        (["results_dir=''"], "results_dir"),
        (["results_dir='~/x'"], "results_dir"),
    ],
)
def test_tracking_and_results_settings_are_checked_before_anything_starts(make_config, overrides, key):
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}="):
        validate(make_config(*overrides))


def test_help_into_a_closed_pipe_is_quiet():
    out = subprocess.run(
        f"{sys.executable} -m bench --help | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.startswith("peft-bench:") and "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr
