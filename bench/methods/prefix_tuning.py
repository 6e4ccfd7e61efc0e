"""Prefix tuning (Li & Liang 2021): trainable key and value vectors prepended in every attention layer
(T5: encoder, decoder and cross-attention).

peft implements prefix tuning through `past_key_values`, which transformers 5 BERT-family models
refuse and which transformers deprecates (renamed `cache` on the way to 5.40). Here the prefix enters
through transformers' attention-function registry instead: a registered attention function prepends
each layer's prefix to the keys and values it is handed (after any rotary embedding), extends the mask,
then calls the stock SDPA kernel (T5's relative-position bias gets zero columns for the prefix). No model
code is patched and no cache is involved, so it works on
encoders, decoders (fused q,k,v included) and T5 alike. DeBERTa-v2 computes attention outside the
registry: there each attention module gets a forward of its own (`disentangled_prefix_forward`).
"""

import types
from dataclasses import dataclass

from bench.errors import ConfigError
from bench.methods import Method, MethodSchema, Serving, freeze_all_but_head, register


@dataclass
class PrefixTuningSchema(MethodSchema):
    num_virtual_tokens: int = 10
    init_std: float = 0.02


def _head_shape(attention, config) -> tuple[int, int]:
    """Key/value heads and head width, whatever each architecture calls them."""
    head_dim = next(
        getattr(attention, a)
        for a in ("attention_head_size", "head_dim", "head_size", "key_value_proj_dim")
        if hasattr(attention, a)
    )
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return kv_heads, head_dim


def _key_matrix(family) -> str:
    # fused families (GPT-2, Pythia) compute keys inside one q,k,v matrix owned by the same attention module
    return "k" if "k" in family.matrices else "qkv"


@register
class PrefixTuning(Method):
    name = "prefix_tuning"
    schema = PrefixTuningSchema
    serving = {"prefix_tuning": Serving("adapter", "prefix tuning")}

    def prefix_tokens(self, cfg):
        return cfg.num_virtual_tokens

    def label(self, row):
        return f"prefix tuning ({row.num_virtual_tokens:g} tokens)"

    def check(self, cfg, family):
        if cfg.num_virtual_tokens < 1:
            raise ConfigError("method.num_virtual_tokens", cfg.num_virtual_tokens, "a count >= 1")
        if not cfg.init_std > 0:
            raise ConfigError("method.init_std", cfg.init_std, "a standard deviation > 0")
        if family.attention == "own":
            return (
                f"prefix tuning enters attention through transformers' attention-function registry, and {family.name} "
                "computes its attention in its own code"
            )
        return None

    def apply(self, model, cfg, family, tokenizer):
        from bench.methods.nn.prefix import (  # deferred: torch
            ATTENTION,
            Prefix,
            disentangled_prefix_forward,
        )

        freeze_all_but_head(model, family)
        # the prefix lives on the attention module that owns each key projection
        for k_name in family.modules(model, [_key_matrix(family)]):
            attention = model.get_submodule(k_name.rsplit(".", 1)[0])
            kv_heads, head_dim = _head_shape(attention, model.config)
            attention.prefix = Prefix(kv_heads, cfg.num_virtual_tokens, head_dim, cfg.init_std)
            if family.attention == "disentangled":  # this module's own forward, with the prefix in it
                attention.forward = types.MethodType(disentangled_prefix_forward, attention)
        if family.attention == "registry":
            model.set_attn_implementation(ATTENTION)
        return model
