"""IMDB movie reviews (Maas et al., 2011): binary sentiment of whole reviews.

Sources: with `task.data_dir` set, a folder in the aclImdb layout (train/pos, train/neg, test/pos,
test/neg, one .txt file per review; train/unsup is not read); with it null, the hub copy `task.hub_id`
(`stanfordnlp/imdb`; the older id `imdb` works too) through `datasets`. The official test split
(25,000 reviews) is the test split and validation is carved from train by `task.split_seed`.
HTML line breaks become spaces; training reviews that repeat one another or a test review are dropped.

## Forms

| form | input | labels | metrics |
|---|---|---|---|
| encoder | text = the review | negative, positive | accuracy |
| text_to_text | `Review: {review}\\nSentiment:` (long reviews lose their beginning) | negative, positive | accuracy |
"""

from __future__ import annotations

from pathlib import Path

from bench.tasks import Example, TaskData, register
from bench.tasks.sources import DataDirSchema, check_source, held_out, hub_rows

LABELS = ["negative", "positive"]
INSTRUCTION = "Classify the sentiment of each review as negative or positive."
LAYOUT = ["train/pos", "train/neg", "test/pos", "test/neg"]


def rows(cfg, split: str) -> list[dict]:
    if not cfg.data_dir:
        return hub_rows(cfg.hub_id, None, split)
    folder = Path(cfg.data_dir).expanduser() / split
    return [
        {"text": path.read_text(encoding="utf-8"), "label": label}
        for label, name in enumerate(("neg", "pos"))
        for path in sorted((folder / name).glob("*.txt"))
    ]


def example(row: dict) -> Example:
    review = " ".join(row["text"].replace("<br />", " ").split())
    return Example(text=review, label=row["label"], prompt=f"Review: {review}\nSentiment:")


def template() -> dict:
    return {"example": example({"text": "{text}", "label": 0}), "labels": LABELS, "instruction": INSTRUCTION}


@register("imdb", schema=DataDirSchema, check=lambda cfg: check_source(cfg, LAYOUT), template=template)
def load(cfg, form) -> TaskData:
    train, test = ([example(r) for r in rows(cfg, split)] for split in ("train", "test"))
    train, validation, test = held_out(train, test, cfg)
    return TaskData(
        labels=LABELS, metrics=("accuracy",), train=train, validation=validation, test=test, instruction=INSTRUCTION
    )
