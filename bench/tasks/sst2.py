"""SST-2 (Socher et al., 2013, as in GLUE): binary sentiment of movie-review sentences.

Sources: with `task.data_dir` set, a folder in the GLUE layout (train.tsv and dev.tsv, tab-separated
with the header `sentence<TAB>label`, 0 negative, 1 positive); with it null, the hub copy
`nyu-mll/glue` (config sst2) through `datasets`. GLUE hides the test labels, so dev is the test
split (872 sentences) and validation is carved from train by `task.split_seed`. Training phrases
that repeat one another or a test sentence are dropped.

## Forms

| form | input | labels | metrics |
|---|---|---|---|
| encoder | text = the sentence | negative, positive | accuracy |
| text_to_text | `Review: {sentence}\\nSentiment:` | negative, positive | accuracy |
"""

from __future__ import annotations

import csv
from pathlib import Path

from bench.tasks import Example, TaskData, register
from bench.tasks.sources import DataDirSchema, check_source, held_out, hub_rows

LABELS = ["negative", "positive"]
INSTRUCTION = "Classify the sentiment of each review as negative or positive."
FILES = {"train": "train.tsv", "validation": "dev.tsv"}


def rows(cfg, split: str) -> list[dict]:
    if not cfg.data_dir:
        return hub_rows(cfg.hub_id, "sst2", split)
    with open(Path(cfg.data_dir).expanduser() / FILES[split], encoding="utf-8", newline="") as f:
        return [
            {"sentence": r["sentence"], "label": int(r["label"])}
            for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        ]


def example(row: dict) -> Example:
    sentence = row["sentence"].strip()
    return Example(text=sentence, label=row["label"], prompt=f"Review: {sentence}\nSentiment:")


def template() -> dict:
    return {"example": example({"sentence": "{sentence}", "label": 0}), "labels": LABELS, "instruction": INSTRUCTION}


@register(
    "sst2",
    schema=DataDirSchema,
    check=lambda cfg: check_source(cfg, list(FILES.values()), {f: ("sentence", "label") for f in FILES.values()}),
    template=template,
)
def load(cfg, form) -> TaskData:
    train, test = ([example(r) for r in rows(cfg, split)] for split in FILES)
    train, validation, test = held_out(train, test, cfg)
    return TaskData(
        labels=LABELS, metrics=("accuracy",), train=train, validation=validation, test=test, instruction=INSTRUCTION
    )
