"""Prefix tuning (Li & Liang 2021): trainable key and value vectors prepended in every attention layer
(T5: encoder, decoder and cross-attention).

peft implements prefix tuning through `past_key_values`, which transformers 5 BERT-family models
refuse and which transformers deprecates (renamed `cache` on the way to 5.40). Here the prefix enters
through transformers' attention-function registry instead: a registered attention function prepends
each layer's prefix to the keys and values it is handed (after any rotary embedding), extends the mask,
then calls the stock SDPA kernel (T5's relative-position bias gets zero columns for the prefix). No model code is patched and no cache is involved, so it works on
encoders, decoders (fused q,k,v included) and T5 alike.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from bench.config import ConfigError
from bench.methods import Method, MethodSchema, freeze_all_but_head, register

ATTENTION = "bench_prefix"


@dataclass
class PrefixTuningSchema(MethodSchema):
    num_virtual_tokens: int = 10
    init_std: float = 0.02


class Prefix(nn.Module):
    """One layer's prefix: (kv_heads, tokens, head_dim) keys and values."""

    def __init__(self, kv_heads: int, tokens: int, head_dim: int, std: float):
        super().__init__()
        self.key = nn.Parameter(torch.randn(kv_heads, tokens, head_dim) * std)
        self.value = nn.Parameter(torch.randn(kv_heads, tokens, head_dim) * std)


def _extend_mask(mask, n_prefix, query, key, causal):
    """The mask for keys [prefix; original]: every query sees the whole prefix."""
    q_len, k_len = query.shape[2], key.shape[2]
    if mask is None:
        if not causal:
            return None  # no padding and no causality: nothing to mask
        mask = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(k_len - q_len)[None, None]
    if mask.dtype == torch.bool:
        visible = torch.ones(*mask.shape[:-1], n_prefix, dtype=torch.bool, device=mask.device)
    else:  # additive float mask: 0 means visible
        visible = torch.zeros(*mask.shape[:-1], n_prefix, dtype=mask.dtype, device=mask.device)
    return torch.cat([visible, mask], dim=-1)


def prefix_attention(module, query, key, value, attention_mask, **kwargs):
    prefix = getattr(module, "prefix", None)
    if prefix is not None:
        batch, n = key.shape[0], prefix.key.shape[1]
        pk = prefix.key.to(key.dtype).unsqueeze(0).expand(batch, -1, -1, -1)
        pv = prefix.value.to(value.dtype).unsqueeze(0).expand(batch, -1, -1, -1)
        attention_mask = _extend_mask(attention_mask, n, query, key, getattr(module, "is_causal", False))
        if kwargs.get("position_bias") is not None:  # T5's relative-position bias: none towards the prefix
            kwargs["position_bias"] = nn.functional.pad(kwargs["position_bias"], (n, 0))
        key, value = torch.cat([pk, key], dim=2), torch.cat([pv, value], dim=2)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(ATTENTION, prefix_attention)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def _head_shape(attention: nn.Module, config) -> tuple[int, int]:
    """Key/value heads and head width, whatever each architecture calls them."""
    head_dim = next(getattr(attention, a) for a in ("attention_head_size", "head_dim", "head_size", "key_value_proj_dim")
                    if hasattr(attention, a))
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return kv_heads, head_dim


def _key_matrix(family) -> str:
    # fused families (GPT-2, Pythia) compute keys inside one q,k,v matrix owned by the same attention module
    return "k" if "k" in family.matrices else "qkv"


@register
class PrefixTuning(Method):
    name = "prefix_tuning"
    schema = PrefixTuningSchema

    def check(self, cfg, family):
        if not family.attention_registry:
            raise ConfigError("method", "prefix_tuning", f"a method other than prefix_tuning on family {family.name}: its "
                              "attention does not go through transformers' attention-function registry, where prefixes enter")
        if cfg.num_virtual_tokens < 1:
            raise ConfigError("method.num_virtual_tokens", cfg.num_virtual_tokens, "a count >= 1")
        if not cfg.init_std > 0:
            raise ConfigError("method.init_std", cfg.init_std, "a standard deviation > 0")

    def apply(self, model, cfg, family, tokenizer):
        freeze_all_but_head(model, family)
        # the prefix lives on the attention module that owns each key projection
        for k_name in family.modules(model, [_key_matrix(family)]):
            attention = model.get_submodule(k_name.rsplit(".", 1)[0])
            kv_heads, head_dim = _head_shape(attention, model.config)
            attention.prefix = Prefix(kv_heads, cfg.num_virtual_tokens, head_dim, cfg.init_std)
        model.set_attn_implementation(ATTENTION)
        return model
