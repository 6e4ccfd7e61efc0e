"""Examples to padded tensor batches, for the two forms a task takes (bench.tasks.FORMS).

encoder: `text` (and `text_pair`) in, `labels` = the class index, for a classification head.
text_to_text: `prompt` in, a completion out; decoders read prompt and completion as one
sequence with the loss on the completion only, T5 reads the prompt in its encoder and the
completion as decoder labels. Every row carries `index`, its position in the example list,
so that length-sorted evaluation batches can be put back in order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from bench.tasks import Example, continuation

IGNORE = -100  # label id the loss skips


def loader(rows: list[dict], tokenizer, batch_size: int, left: bool = False) -> DataLoader:
    """Evaluation batches of tokenized rows, length-sorted so that they waste little on padding, each
    padded to its longest member (on the left for generation)."""
    rows = sorted(({**row, "index": i} for i, row in enumerate(rows)), key=lambda row: len(row["input_ids"]))
    return DataLoader(rows, batch_size=batch_size, collate_fn=lambda batch: pad(batch, tokenizer.pad_token_id, left))


def pad(batch: list[dict], pad_id: int, left: bool = False) -> dict:
    """Right-pad (left for generation) every sequence field; labels pad with IGNORE."""
    out = {}
    for key in batch[0]:
        values = [row[key] for row in batch]
        if not isinstance(values[0], list):
            out[key] = torch.tensor(values)
            continue
        fill = IGNORE if key == "labels" else 0 if key == "attention_mask" else pad_id
        width = max(len(v) for v in values)
        out[key] = torch.tensor(
            [[fill] * (width - len(v)) + v if left else v + [fill] * (width - len(v)) for v in values]
        )
    return out


def encoder_rows(examples: list[Example], tokenizer, max_length: int) -> list[dict]:
    first = [e.text for e in examples]
    pairs = [e.text_pair for e in examples] if examples and examples[0].text_pair is not None else None
    encoded = tokenizer(first, pairs, truncation=True, max_length=max_length)
    return [
        {"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i], "labels": e.label}
        for i, e in enumerate(examples)
    ]


def prompt_ids(tokenizer, prompt: str, max_length: int) -> list[int]:
    # long inputs lose their beginning (but keep a BOS token): the question and the answer cue sit at the end
    ids = tokenizer(prompt)["input_ids"]
    if len(ids) <= max_length:
        return ids
    keep_bos = tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id
    return ids[:1] + ids[1 - max_length :] if keep_bos else ids[-max_length:]


def completion_ids(tokenizer, prompt: str, completion: str, architecture: str) -> list[int]:
    if architecture == "encoder_decoder":
        return tokenizer(completion)["input_ids"]  # T5's tokenizer ends it with </s>
    # a decoder reads prompt and completion as one text
    return tokenizer(continuation(prompt, completion), add_special_tokens=False)["input_ids"]


def text_to_text_row(
    tokenizer, prompt: str, completion: str, architecture: str, max_length: int, max_new_tokens: int, stop: bool = True
) -> dict:
    """One training (or scoring) row; `stop` appends end-of-sequence to a decoder's completion,
    which generation needs to learn to stop and rank classification must not score."""
    source = prompt_ids(tokenizer, prompt, max_length)
    target = completion_ids(tokenizer, prompt, completion, architecture)
    if architecture == "decoder" and stop:
        target = target + [tokenizer.eos_token_id]
    target = target[:max_new_tokens]
    if architecture == "encoder_decoder":
        return {"input_ids": source, "attention_mask": [1] * len(source), "labels": target}
    return {
        "input_ids": source + target,
        "attention_mask": [1] * (len(source) + len(target)),
        "labels": [IGNORE] * len(source) + target,
    }


def training_rows(
    task, examples: list[Example], tokenizer, architecture: str, max_length: int, max_new_tokens: int
) -> list[dict]:
    if architecture == "encoder":
        return encoder_rows(examples, tokenizer, max_length)
    return [
        text_to_text_row(tokenizer, e.prompt or e.text, task.completion(e), architecture, max_length, max_new_tokens)
        for e in examples
    ]


class Rows(Dataset):
    """Training examples, each tokenized when a batch first reads it: a run of a few hundred steps reads a
    fraction of a large training set (the default run, 3,200 of 34,743 tweets, whose tokenizing whole
    took 5 s). A row is the same tokenized alone as in a list, so the batches are too."""

    def __init__(self, examples: list[Example], tokenize: Callable[[Example], dict]):
        self.examples, self.tokenize, self.rows = examples, tokenize, {}

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        if i not in self.rows:
            self.rows[i] = {**self.tokenize(self.examples[i]), "index": i}
        return self.rows[i]

    def read(self) -> list[dict]:
        """The rows tokenized so far: those training read (and, grouped by length, the rest of their group)."""
        return list(self.rows.values())


class LengthGroupedBatches(Sampler):
    """Batches of examples of about the same length (`train.group_by_length`), in groups as transformers'
    LengthGroupedSampler forms them: each pass shuffles the examples and cuts that order into groups of
    50 batches (fewer for a small set, so that there are at least 4 groups and a pass's batches differ
    from the last's), and each group is sorted by length, so that a batch pads little while an epoch
    still reads every example once. Unlike transformers, which runs a group from long to short and the
    longest batch first, the batches of a group are shuffled. `length(i)` is example i's tokens: a
    group's rows are tokenized when it forms, as its batches are about to read them."""

    GROUP = 50  # batches per group at most: transformers' megabatch

    def __init__(self, length: Callable[[int], int], examples: int, batch_size: int, generator: torch.Generator):
        self.length, self.examples, self.batch_size, self.generator = length, examples, batch_size, generator

    def __len__(self) -> int:
        return math.ceil(self.examples / self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.examples, generator=self.generator).tolist()
        size = max(1, min(self.GROUP, self.examples // (4 * self.batch_size))) * self.batch_size
        for start in range(0, len(order), size):
            group = sorted(order[start : start + size], key=self.length)
            batches = [group[b : b + self.batch_size] for b in range(0, len(group), self.batch_size)]
            yield from (batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist())


def train_loader(
    task, tokenizer, architecture: str, task_cfg, batch_size: int, seed: int, group_by_length: bool = False
) -> DataLoader:
    """The shuffled, seeded training batches of a run (its `.dataset` is their Rows); with
    `group_by_length`, batches of examples of about the same length (LengthGroupedBatches)."""
    rows = Rows(
        task.train,
        lambda e: training_rows(task, [e], tokenizer, architecture, task_cfg.max_length, task_cfg.max_new_tokens)[0],
    )
    generator = torch.Generator().manual_seed(seed)
    collate = partial(pad, pad_id=tokenizer.pad_token_id)
    if not group_by_length:
        return DataLoader(rows, batch_size=batch_size, shuffle=True, generator=generator, collate_fn=collate)

    def length(i: int) -> int:  # what a batch pads: T5's labels too
        return len(rows[i]["input_ids"]) + (len(rows[i]["labels"]) if architecture == "encoder_decoder" else 0)

    return DataLoader(
        rows,
        batch_sampler=LengthGroupedBatches(length, len(rows), batch_size, generator),
        generator=generator,
        collate_fn=collate,
    )


def count_tokens(batch: dict) -> int:
    """Real (non-padding) input tokens in a batch."""
    return int(batch["attention_mask"].sum())
