"""Prefix tuning through the attention-function registry, on an encoder."""

import torch

from bench.methods.prefix_tuning import _extend_mask
from bench.runner import build


def test_causal_mask_lets_every_query_see_the_prefix():
    query, key = torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4)
    mask = _extend_mask(None, 3, query, key, causal=True)
    assert mask.tolist() == [[[[True, True, True, True, False], [True, True, True, True, True]]]]
    assert _extend_mask(None, 3, query, key, causal=False) is None


def test_padding_mask_is_extended_with_visible_prefix():
    query, key = torch.zeros(2, 1, 3, 4), torch.zeros(2, 1, 3, 4)
    padded = torch.tensor([True, True, False]).expand(2, 1, 3, 3)
    assert _extend_mask(padded, 2, query, key, causal=False)[0, 0, 0].tolist() == [True, True, True, True, False]
    additive = torch.tensor([0.0, 0.0, -1e9]).expand(2, 1, 3, 3)
    assert _extend_mask(additive, 2, query, key, causal=False)[0, 0, 0].tolist() == [0.0, 0.0, 0.0, 0.0, -1e9]


def test_prefix_changes_the_output_and_ignores_padding(make_config):
    cfg = make_config("method=prefix_tuning", "method.init_std=1.0")
    _, _, _, model, tokenizer, _, _ = build(cfg)
    model.eval()
    short, long = "good morning", "what a terrible, terrible day it has been for everyone here"
    with torch.no_grad():
        alone = model(**tokenizer([short], return_tensors="pt")).logits
        batched = model(**tokenizer([short, long], padding=True, return_tensors="pt")).logits
        model.set_attn_implementation("sdpa")  # the same weights without the prefix
        plain = model(**tokenizer([short], return_tensors="pt")).logits
    # the short text's logits do not depend on the padding added for the long one
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(plain, alone, atol=1e-3)
