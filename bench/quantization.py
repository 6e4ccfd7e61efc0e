"""Quantized bases: the frozen base model's linear layers stored in 4 or 8 bits by bitsandbytes, the method
training in float on top (QLoRA, Dettmers et al. 2023, is `method=lora model.quantize=nf4`).

`model.quantize` is a model setting, orthogonal to the method: none, nf4 (4-bit NormalFloat), fp4 or int8
(LLM.int8()), through transformers' BitsAndBytesConfig and peft's k-bit preparation. `model.double_quant`
quantizes the 4-bit blocks' constants again (QLoRA's double quantization), `model.compute_dtype` is what
the 4-bit layers compute in. A classification head (the family's `head`) stays in float, as it trains in
every method; transformers keeps the output embedding in float by itself. A method that updates the base's
own weights cannot train stored integers, and is refused before anything loads.

This module imports neither torch nor transformers at its top: validation (torch-free) reads `check`.
"""

from __future__ import annotations

from bench.errors import ConfigError

KINDS = ("none", "nf4", "fp4", "int8")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
# bytes per stored 4-bit weight: 4-bit values with a float32 absmax per block of 64 (or, double-quantized,
# an 8-bit one with a float32 constant per 256 of those: about 0.127 bits per weight, as the QLoRA paper counts)
BLOCK, DOUBLE_BLOCK = 64, 256
BYTES_PER_WEIGHT = {("nf4", False): 0.5 + 4 / BLOCK, ("nf4", True): 0.5 + (1 + 4 / DOUBLE_BLOCK) / BLOCK}
BYTES_PER_WEIGHT |= {("fp4", d): b for (_, d), b in BYTES_PER_WEIGHT.items()}


def quantized(model_cfg) -> bool:
    return model_cfg.get("quantize", "none") != "none"


def check(cfg, method) -> None:
    """Raise ConfigError for a quantization setting that cannot run with `method` (before anything loads)."""
    m = cfg.model
    if m.quantize not in KINDS:
        raise ConfigError("model.quantize", m.quantize, "one of " + ", ".join(KINDS))
    if m.compute_dtype not in COMPUTE_DTYPES:
        raise ConfigError("model.compute_dtype", m.compute_dtype, "one of " + ", ".join(COMPUTE_DTYPES))
    if m.quantize not in ("nf4", "fp4") and (m.compute_dtype != "float32" or not m.double_quant):
        key = "model.compute_dtype" if m.compute_dtype != "float32" else "model.double_quant"
        raise ConfigError(
            key, m[key.split(".")[1]], f"its default: it applies to 4-bit bases (model.quantize={m.quantize})"
        )
    method.check_quantized(cfg.method, m.quantize)
    if not quantized(m):
        return
    if cfg.get("mode", "run") == "serve":
        raise ConfigError("model.quantize", m.quantize, "none: mode=serve measures float bases only")


def skipped(family) -> list[str]:
    """transformers' patterns for the modules left in float: the task head's, wherever it sits (BERT's pooler
    is `bert.pooler.dense`, which the plain name `pooler` does not match: patterns match from the start)."""
    return [rf"(.*\.)?{name}" for name in family.head]


def config(model_cfg, family):
    """transformers' BitsAndBytesConfig for the preset, or None for a float base."""
    if not quantized(model_cfg):
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if model_cfg.quantize == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skipped(family) or None)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=model_cfg.quantize,
        bnb_4bit_use_double_quant=model_cfg.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, model_cfg.compute_dtype),
        llm_int8_skip_modules=skipped(family) or None,
    )


def prepare(model):
    """peft's k-bit preparation: the base frozen, its norms and embeddings in float32, inputs' gradients on
    (so that a method's layers before the first quantized one get theirs); its gradient checkpointing is
    left to train.gradient_checkpointing."""
    import bitsandbytes as bnb
    from peft import prepare_model_for_kbit_training

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            # bitsandbytes' CPU inference path (AVX512-BF16 machines) repacks the weights in place at the first
            # forward without gradients: training after an evaluation then fails, and layers narrower than a
            # block of 64 cannot be repacked at all; the plain path computes the same
            module.support_avx512bf16_for_cpu = False
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def bytes_per_weight(model_cfg, inputs: int) -> float | None:
    """What one weight of a quantized layer of `inputs` inputs takes in memory, constants included (LLM.int8()
    keeps a float32 scale per output row); None for a float base."""
    if not quantized(model_cfg):
        return None
    if model_cfg.quantize == "int8":
        return 1 + 4 / inputs
    return BYTES_PER_WEIGHT[model_cfg.quantize, bool(model_cfg.double_quant)]


def weights(p) -> int:
    """How many weights a parameter holds: a 4-bit one packs two per byte (bitsandbytes' Params4bit keeps the
    original shape in its quant_state)."""
    state = getattr(p, "quant_state", None)
    return state.shape.numel() if state is not None else p.numel()
