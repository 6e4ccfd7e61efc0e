"""What a run trained is kept beside its record and reloads to the same test predictions."""

import json
from pathlib import Path

import pytest
from peft import PeftModel

from bench.compose import typed
from bench.launch import launch
from bench.metrics import chosen
from bench.predict import predict
from bench.runner import build, seed_everything
from tests.conftest import tiny_bert

# steps enough that every trained tensor moves away from its initialisation
TRAINED = ("train.max_steps=3", "train.batch_size=8", "method.lr=1e-2")


def _outputs(rec: dict, kept: Path | None):
    """(the model `build` gives: the run's trained one from what it kept, else the untrained one; its test outputs)"""
    cfg = typed(rec.config)
    seed_everything(cfg.seed)  # the untrained model: the run's own initialisation
    built = build(cfg, kept)
    task, model, tokenizer, architecture = built.task, built.model, built.tokenizer, built.architecture
    outputs, _ = predict(
        model.eval(), tokenizer, task, task.test, architecture, cfg.task, cfg.train.eval_batch_size, "cpu"
    )
    return model, outputs


def _reloaded(rec: dict):
    """(the model rebuilt from what the run kept, its test predictions); they differ from the
    untrained model's scores, so that a reload that loaded nothing cannot pass"""
    model, outputs = _outputs(rec, Path(rec.size.folder))
    if rec.config["method"]["name"] != "probe":  # an unfitted probe has no scores
        assert outputs != _outputs(rec, None)[1]
    return model, chosen(outputs)


def _kept_run(make_config, tiny_models, *overrides) -> dict:
    rec = launch(make_config(*tiny_bert(tiny_models), *TRAINED, *overrides))
    assert rec.status == "ok", rec.error
    return rec


def test_a_lora_run_reloads_with_peft_to_the_same_predictions(make_config, tiny_models, tmp_path):
    rec = _kept_run(make_config, tiny_models, "method=lora")
    folder = Path(rec.size.folder)
    assert folder == tmp_path / "results" / "default" / rec.run_id
    # peft's own format, and only its weight file counted: not its README nor its JSON config
    assert sorted(rec.size.files) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert rec.size.bytes == (folder / "adapter_model.safetensors").stat().st_size
    assert json.loads((folder / "adapter_config.json").read_text())["peft_type"] == "LORA"
    model, predicted = _reloaded(rec)
    assert isinstance(model, PeftModel)  # PeftModel.from_pretrained(base, folder)
    assert predicted == rec.per_example["predicted"]


@pytest.mark.slow  # a run per method
@pytest.mark.parametrize(
    "method", ["ia3", "prompt_tuning", "prefix_tuning", "bitfit", "adapter", "diff_pruning", "peft", "probe"]
)
def test_every_method_reloads_to_the_same_predictions(make_config, tiny_models, method):
    rec = _kept_run(make_config, tiny_models, f"method={method}")
    assert rec.size.folder and rec.size.bytes > 0
    assert _reloaded(rec)[1] == rec.per_example["predicted"]


@pytest.mark.slow  # two runs
def test_a_full_copy_is_kept_only_when_asked(make_config, tiny_models):
    rec = _kept_run(make_config, tiny_models, "method=full_ft")
    # measured in a temporary folder, then dropped
    assert rec.size.folder is None and rec.size.bytes >= 4 * rec.params.trainable
    assert not (Path(rec.config["results_dir"]) / "default" / rec.run_id).exists()
    kept = _kept_run(make_config, tiny_models, "method=full_ft", "keep_full_copies=true", "force=true")
    assert kept.run_id == rec.run_id  # keeping a copy does not change what the run computes
    assert _reloaded(kept)[1] == kept.per_example["predicted"]


@pytest.mark.slow  # two tiny runs
def test_a_damaged_or_mismatched_kept_folder_is_refused(make_config, tiny_models, tmp_path):
    from safetensors.torch import save_file

    bitfit = _kept_run(make_config, tiny_models, "method=bitfit")
    folder = Path(bitfit.size.folder)
    save_file({}, str(folder / "trainable.safetensors"), metadata={"method": "bitfit"})  # emptied
    with pytest.raises(KeyError, match=r"trained parameters the saved tensors lack \(\d+\)"):
        _outputs(bitfit, folder)
    other = typed({**bitfit.config, "method": {**bitfit.config["method"], "name": "full_ft"}})
    save_file({}, str(folder / "trainable.safetensors"), metadata={"method": "bitfit"})
    with pytest.raises(ValueError, match="was kept by method=bitfit, not method=full_ft"):
        build(other, folder)

    lora = _kept_run(make_config, tiny_models, "method=lora")
    as_ia3 = make_config(*tiny_bert(tiny_models), "method=ia3")
    with pytest.raises(ValueError, match="holds a LORA adapter, not the IA3 of method=ia3"):
        build(as_ia3, Path(lora.size.folder))
