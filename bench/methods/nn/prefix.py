"""Prefix tuning's modules (bench/methods/prefix_tuning.py): each layer's prefix, the attention
function that prepends it (registered with transformers on import), and DeBERTa-v2's own forward with it."""

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.models.deberta_v2.modeling_deberta_v2 import scaled_size_sqrt

ATTENTION = "bench_prefix"


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


def disentangled_prefix_forward(
    self,
    hidden_states,
    attention_mask,
    output_attentions=False,
    query_states=None,
    relative_pos=None,
    rel_embeddings=None,
):
    """DeBERTa-v2's DisentangledSelfAttention.forward (transformers 5.24), with this layer's prefix
    keys and values placed before the real ones. DeBERTa computes its attention itself, outside the
    attention-function registry, and its relative-position terms index the real keys only: the
    prefix gets content scores (it has no position), the real keys keep theirs."""
    if query_states is None:
        query_states = hidden_states
    heads = self.num_attention_heads
    query = self.transpose_for_scores(self.query_proj(query_states), heads)  # (batch * heads, n, head_dim)
    key = self.transpose_for_scores(self.key_proj(hidden_states), heads)
    value = self.transpose_for_scores(self.value_proj(hidden_states), heads)
    scale_factor = 1 + ("c2p" in self.pos_att_type) + ("p2c" in self.pos_att_type)
    scale = scaled_size_sqrt(query, scale_factor).to(query.dtype)
    scores = torch.bmm(query, key.transpose(-1, -2) / scale)
    if self.relative_attention:
        scores = scores + self.disentangled_attention_bias(
            query, key, relative_pos, self.pos_dropout(rel_embeddings), scale_factor
        )
    batch, n = hidden_states.shape[0], self.prefix.key.shape[1]
    prefix_key = self.prefix.key.to(key.dtype).expand(batch, -1, -1, -1).reshape(batch * heads, n, -1)
    prefix_value = self.prefix.value.to(value.dtype).expand(batch, -1, -1, -1).reshape(batch * heads, n, -1)
    scores = torch.cat([torch.bmm(query, prefix_key.transpose(-1, -2) / scale), scores], dim=-1)
    scores = scores.view(-1, heads, scores.size(-2), scores.size(-1))
    mask = attention_mask.bool()
    mask = torch.cat([torch.ones(*mask.shape[:-1], n, dtype=torch.bool, device=mask.device), mask], dim=-1)
    probs = self.dropout(nn.functional.softmax(scores.masked_fill(~mask, torch.finfo(query.dtype).min), dim=-1))
    context = torch.bmm(probs.view(-1, probs.size(-2), probs.size(-1)), torch.cat([prefix_value, value], dim=1))
    context = context.view(-1, heads, context.size(-2), context.size(-1)).permute(0, 2, 1, 3).contiguous()
    context = context.view(*context.size()[:-2], -1)
    return (context, probs) if output_attentions else (context, None)
