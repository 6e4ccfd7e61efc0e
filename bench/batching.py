"""Examples to padded tensor batches for a classification model."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from bench.tasks import Example


def loader(examples: list[Example], tokenizer, max_length: int, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    # tokenized once, padded per batch to its longest member
    first = [e.text for e in examples]
    pairs = [e.text_pair for e in examples] if examples and examples[0].text_pair is not None else None
    encoded = tokenizer(first, pairs, truncation=True, max_length=max_length)
    rows = [
        {**{k: v[i] for k, v in encoded.items()}, "labels": e.label}
        for i, e in enumerate(examples)
    ]

    def collate(batch):
        return tokenizer.pad(batch, return_tensors="pt")

    if not shuffle:  # evaluation: length-sorted batches waste little on padding; metrics ignore order
        rows.sort(key=lambda row: len(row["input_ids"]))
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(rows, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collate)


def count_tokens(batch: dict) -> int:
    """Real (non-padding) input tokens in a batch."""
    return int(batch["attention_mask"].sum())
