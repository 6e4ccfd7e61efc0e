"""Forgetting: how much worse the tuned model predicts general English than the model it started from.

The score, as in peft's method comparison, is the mean per-token loss on a fixed sample of general
text after tuning minus the same before it (positive: the model forgot). Decoders predict each next
token of an article; T5 predicts an article's second half from its first, as the LM-adapted T5
was trained to. An encoder classifier has no language-model head to score text with, so runs in
the encoder form record no score. The sample: the first `TEXTS` articles of the Lee news corpus
(bench/assets.py, `LEE`, with its provenance and licence), each cut to `MAX_TOKENS` tokens.
"""

from __future__ import annotations

import torch

from bench import assets

TEXTS = 32
MAX_TOKENS = 128


def sample() -> list[str]:
    """The fixed sample: the corpus's first TEXTS articles (one per line)."""
    lines = assets.fetch_text(assets.LEE).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()][:TEXTS]


@torch.no_grad()
def mean_token_loss(model: torch.nn.Module, tokenizer, architecture: str, device: str) -> dict:
    """{'loss': mean cross-entropy per predicted token of the sample, 'tokens': how many}."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    for text in sample():
        ids = tokenizer(text, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")["input_ids"].to(device)
        if architecture == "decoder":
            loss, n = model(input_ids=ids, labels=ids).loss, ids.shape[1] - 1
        else:
            half = ids.shape[1] // 2
            loss, n = model(input_ids=ids[:, :half], labels=ids[:, half:]).loss, ids.shape[1] - half
        total, tokens = total + loss.item() * n, tokens + n
    model.train(was_training)
    return {"loss": total / tokens, "tokens": tokens}


def score(before: dict | None, after: dict | None, reason: str | None = None) -> dict:
    """The record's `forgetting`: both losses and their difference, or why there is none."""
    if before is None or after is None:
        return {"score": None, "reason": reason}
    return {
        "score": after["loss"] - before["loss"],
        "loss_before": before["loss"],
        "loss_after": after["loss"],
        "tokens": after["tokens"],
        "sample": f"the first {TEXTS} articles, at most {MAX_TOKENS} tokens each, of {assets.LEE.provenance}",
    }
