"""model.weights=random (bench/random_weights.py): a preset's real shape with its architecture's initialisation,
built once into a folder that loads like any other, with a tokenizer from elsewhere checked against the embedding."""

import pytest
import torch

from bench import models
from bench.errors import ConfigError
from bench.families import FAMILIES
from bench.meta import build
from bench.validate import validate

# MiniLM's shape, smaller: random weights build in a blink and its package's tokenizer fits the vocabulary
SMALL = ["model.config.num_hidden_layers=1", "model.config.hidden_size=48", "model.config.intermediate_size=64"]


def test_random_weights_load_in_the_presets_shape_built_once_the_same_everywhere(make_config, tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_BENCH_CACHE", str(tmp_path / "cache"))
    cfg = make_config("model.weights=random", *SMALL)
    validate(cfg)
    family = FAMILIES[cfg.model.family]
    model, tokenizer, path = models.load(cfg.model, family, num_labels=3)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    assert shapes == {n: p.shape for n, p in build(cfg.model, family, 3).named_parameters()}  # the preset's shape
    assert shapes["bert.embeddings.word_embeddings.weight"] == (30522, 48) and len(tokenizer) == 30522
    folder = next((tmp_path / "cache" / "random").glob("minilm-l6-*"))
    assert path == str(folder)
    built = (folder / "model.safetensors").stat().st_mtime_ns
    again = models.load(cfg.model, family, num_labels=3)[0]
    assert (folder / "model.safetensors").stat().st_mtime_ns == built  # reused, not rebuilt
    encoder = {n: p for n, p in model.named_parameters() if not n.startswith("classifier")}
    assert all(torch.equal(p, dict(again.named_parameters())[n]) for n, p in encoder.items())
    assert encoder["bert.encoder.layer.0.attention.self.query.weight"].std() > 0.01  # initialised, not zeros


def test_a_tokenizer_larger_than_the_embedding_is_refused_before_building(make_config, tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_BENCH_CACHE", str(tmp_path / "cache"))
    cfg = make_config("model.weights=random", *SMALL, "model.config.vocab_size=1000")
    with pytest.raises(ConfigError) as e:
        models.load(cfg.model, FAMILIES[cfg.model.family], num_labels=2)
    assert e.value.key == "model.tokenizer" and "1000 ids" in str(e.value) and "30522" in str(e.value)
    assert not (tmp_path / "cache" / "random").exists()


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["model.weights=randn"], "model.weights"),
        (["model.weights=random", "model.config=null"], "model.weights"),  # no shape to build
        (["model=gpt3-175b", "model.weights=random"], "model.tokenizer"),  # no tokenizer of its own
    ],
)
def test_random_weights_bad_settings_are_refused_before_loading(make_config, overrides, key):
    with pytest.raises(ConfigError) as e:
        validate(make_config(*overrides))
    assert e.value.key == key


def test_a_preset_without_weights_trains_on_random_ones_with_a_tokenizer_given(make_config):
    cfg = make_config("model=gpt3-175b", "model.weights=random", "model.tokenizer=some/tokenizer", "mode=count")
    assert validate(cfg) is None
