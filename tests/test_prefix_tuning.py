"""Prefix tuning through the attention-function registry (BERT), and through DeBERTa-v2's own attention."""

import torch

from bench.methods.nn.prefix import _extend_mask
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
    built = build(cfg)
    model, tokenizer = built.model, built.tokenizer
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


def test_deberta_prefix_changes_the_output_and_ignores_padding(make_config, tiny_models):
    """DeBERTa computes attention itself: its prefix goes through the module's own forward."""
    cfg = make_config(
        "model=deberta-v2-xxlarge",
        "model.source=hub",
        f"model.hub_id={tiny_models['deberta_v2']}",
        "method=prefix_tuning",
        "method.init_std=1.0",
    )
    built = build(cfg)
    model, tokenizer = built.model, built.tokenizer
    model.eval()
    short, long = "good morning", "what a terrible , terrible day it has been for the lazy dog"
    with torch.no_grad():

        def last_hidden(texts):  # the tiny head's logits are too small to tell apart
            return model(
                **tokenizer(texts, padding=True, return_tensors="pt"), output_hidden_states=True
            ).hidden_states[-1]

        alone, batched = last_hidden([short]), last_hidden([short, long])
        for m in model.modules():
            if "forward" in vars(m):
                del m.forward  # the class's own attention: the same weights without the prefix
        plain = last_hidden([short])
    torch.testing.assert_close(batched[0, : alone.shape[1]], alone[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(plain, alone, atol=1e-2)
