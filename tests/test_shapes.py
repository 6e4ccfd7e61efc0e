"""The one reader of model shapes (bench/shapes.py) against the published shapes of a preset of every
family, and against the layers a meta-device build of each family's presets really has."""

import pytest
from omegaconf import OmegaConf
from transformers.pytorch_utils import Conv1D

from bench import assets, meta
from bench.compose import CONF
from bench.families import FAMILIES
from bench.shapes import Shape

# preset: (hidden, layers, heads, key-value heads, feed-forward width, gated, vocabulary), from each model's
# paper or model card (the hub's config.json where they give no table)
PUBLISHED = {
    "bert-base-uncased": (768, 12, 12, 12, 3072, False, 30522),
    "roberta-base": (768, 12, 12, 12, 3072, False, 50265),
    "deberta-v2-xxlarge": (1536, 48, 24, 24, 6144, False, 128100),
    "gpt2": (768, 12, 12, 12, 3072, False, 50257),
    "llama2-7b": (4096, 32, 32, 32, 11008, True, 32000),
    "llama2-70b": (8192, 80, 64, 8, 28672, True, 32000),  # grouped-query attention: 8 key-value heads
    "flan-t5-base": (768, 12, 12, 12, 2048, True, 32128),  # gated GELU; 12 decoder layers too
    "pythia-1b": (2048, 16, 8, 8, 8192, False, 50304),
    "gpt-j-6b": (4096, 28, 16, 16, 16384, False, 50400),
    "gpt-neo-1.3b": (2048, 24, 16, 16, 8192, False, 50257),
    "bloom-560m": (1024, 24, 16, 16, 4096, False, 250880),
    "mpt-7b": (4096, 32, 32, 32, 16384, False, 50432),  # expansion_ratio 4: d_ff 16,384
    "opt-1.3b": (2048, 24, 32, 32, 8192, False, 50272),
}


def _preset(name):
    return OmegaConf.load(CONF / "model" / f"{name}.yaml")


def test_every_family_has_a_published_shape_here():
    assert {_preset(p).family for p in PUBLISHED} == set(FAMILIES)


@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_the_reader_gives_the_published_shape(preset):
    s = Shape.of(assets.hf_config(_preset(preset)))
    assert (s.width, s.layers, s.heads, s.kv_heads, s.ff_width, s.gated, s.vocab) == PUBLISHED[preset]
    assert s.decoder_layers == (12 if preset == "flan-t5-base" else 0)


def _feed_forward_width(model, family) -> int:
    """The input width of the first feed-forward output matrix the build made: the feed-forward width."""
    name = family.modules(model, ["ff_out"])[0]
    layer = model.get_submodule(name)
    return layer.weight.shape[0] if isinstance(layer, Conv1D) else layer.in_features


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF / "model").glob("*.yaml")))
def test_the_reader_agrees_with_the_model_as_built(preset):
    cfg = _preset(preset)
    family = FAMILIES[cfg.family]
    model = meta.build(cfg, family)
    s = Shape.of(model.config)
    assert _feed_forward_width(model, family) == s.ff_width
    assert s.gated == any(n.endswith(("gate_proj", "wi_0")) for n, _ in model.named_modules())
    assert model.get_input_embeddings().weight.shape == (s.vocab, s.embed_width or s.width)
