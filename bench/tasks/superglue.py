"""SuperGLUE (Wang et al., 2019): BoolQ, CB, COPA, MultiRC, ReCoRD, RTE, WiC, WSC.

Sources: with `task.data_dir` set, a local folder in the official layout (the unzipped task folders:
<data_dir>/BoolQ/train.jsonl, <data_dir>/BoolQ/val.jsonl, <data_dir>/CB/..., ...); with it null, the
hub copy `aps/super_glue` through the `datasets` package. The official test files have no labels,
so val.jsonl (the hub's `validation`) is the test split and validation is carved from train.jsonl
by `task.split_seed`. Sizes (train_size, val_size, test_size) count questions: one row, one COPA
or MultiRC question, one ReCoRD query; a question's examples never straddle two splits.

## Forms

`encoder`: a classification head reads `text` and `text_pair`. `text_to_text`: the model reads
`prompt`, and the runner scores each label word (or the example's own `choices`) after it, joined
by a space (rank classification).

| task | encoder: text / text_pair -> labels | text_to_text: prompt -> choices | metrics |
|---|---|---|---|
| BoolQ | question / passage -> no, yes | `{passage}\\nQuestion: {question}?\\nAnswer:` -> no, yes | accuracy |
| CB | premise / hypothesis -> true (entailment), false (contradiction), neither (neutral) | `{premise}\\nQuestion: {hypothesis} true, false or neither?\\nAnswer:` | accuracy, macro_f1 |
| RTE | premise / hypothesis -> true (entailment), false | `{premise}\\nQuestion: {hypothesis} true or false?\\nAnswer:` | accuracy |
| WiC | `{word}: {sentence1}` / sentence2 -> no, yes | `Sentence 1: ..\\nSentence 2: ..\\nQuestion: Is the word "{word}" used with the same meaning in both sentences?\\nAnswer:` | accuracy |
| WSC | text / `Does "{pronoun}" refer to "{noun}"?` -> no, yes | `{text}\\nQuestion: In the passage above, does "{pronoun}" refer to "{noun}"?\\nAnswer:` | accuracy |
| COPA | two examples per question, premise / `because|so {choice}` -> no, yes; group = the question | `{premise} because` (or `so`) -> the two choices | choice_accuracy |
| MultiRC | one example per answer option, `{question} {answer}` / paragraph -> no, yes; group = the question | `{paragraph}\\nQuestion: ..\\nProposed answer: ..\\nIs the proposed answer correct?\\nAnswer:` -> no, yes; group = the question | f1a, multirc_em |
| ReCoRD | one example per candidate entity, the query with the candidate in @placeholder / passage -> no, yes; group = the query, target = the candidate | `{passage}\\nFill in the blank: {query with ____}\\nAnswer:` -> the candidate entities | record_f1, record_em |

COPA choices are lower-cased at the first letter (not "I") so that they continue the premise.
Binarized questions (COPA and ReCoRD in the encoder form) pick the option whose positive score,
score[1] - score[0], is highest. MultiRC paragraphs lose their HTML (<b>, <br>) and ReCoRD
passages their @highlight markers, as in T5's preprocessing. The hub's WSC is `wsc.fixed` (span
texts repaired); the local files are read as they are.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.tasks import FORMS, Example, TaskData, register
from bench.tasks.sources import DataDirSchema, check_source, held_out, hub_rows

YES_NO = ["no", "yes"]


@dataclass(frozen=True)
class Spec:
    folder: str  # the official folder (and zip) name
    hub_config: str  # the config of aps/super_glue
    metrics: tuple[str, ...]
    classes: tuple = (False, True)  # the official jsonl label values, in the hub's label order
    labels: tuple[str, ...] = tuple(YES_NO)  # label words, same order (binarized tasks: wrong, right option)
    # text_to_text labels where the examples carry their own choices (COPA: the choice slots; ReCoRD: none)
    choice_labels: tuple[str, ...] | None = None
    # fixed-label tasks: str.format templates over a (flat) row
    text: str = ""
    text_pair: str = ""
    prompt: str = ""
    examples: Callable | None = None  # multiple-choice and span tasks: (row, form, split) -> examples


def copa(row: dict, form: str, split: str) -> list[Example]:
    group = f"{split}:{row['idx']}"
    word = "because" if row["question"] == "cause" else "so"
    choices = tuple(_continuing(row[c]) for c in ("choice1", "choice2"))
    if form == "encoder":
        return [
            Example(text=row["premise"], text_pair=f"{word} {c}", label=int(i == row["label"]), group=group)
            for i, c in enumerate(choices)
        ]
    prompt = f"{row['premise'].removesuffix('.')} {word}"
    return [Example(text=row["premise"], prompt=prompt, choices=choices, label=row["label"], group=group)]


def multirc(row: dict, form: str, split: str) -> list[Example]:
    group = f"{split}:{row['idx']['paragraph']}:{row['idx']['question']}"
    paragraph = _plain(re.sub(r"</?b>|<br>", " ", row["paragraph"]))
    prompt = (
        f"{paragraph}\nQuestion: {row['question']}\nProposed answer: {row['answer']}\n"
        "Is the proposed answer correct?\nAnswer:"
    )
    return [
        Example(
            text=f"{row['question']} {row['answer']}",
            text_pair=paragraph,
            prompt=prompt,
            label=row["label"],
            group=group,
        )
    ]


def record(row: dict, form: str, split: str) -> list[Example]:
    group = f"{split}:{row['idx']['passage']}:{row['idx']['query']}"
    # T5's preprocessing: a @highlight bullet becomes a sentence
    passage = re.sub(r"\n@highlight\n", ". ", re.sub(r"([.?!\"'])\n@highlight\n", r"\1 ", row["passage"]))
    answers = tuple(row["answers"])
    if not answers:  # unlabelled (the official test file)
        return []
    choices = tuple(sorted(set(row["entities"]) | set(answers)))
    if form == "encoder":
        return [
            Example(
                text=row["query"].replace("@placeholder", c),
                text_pair=passage,
                label=int(c in answers),
                group=group,
                target=c,
                answers=answers,
            )
            for c in choices
        ]
    prompt = f"{passage}\nFill in the blank: {row['query'].replace('@placeholder', '____')}\nAnswer:"
    return [
        Example(
            text=row["query"],
            text_pair=passage,
            prompt=prompt,
            choices=choices,
            label=choices.index(answers[0]),
            group=group,
            answers=answers,
        )
    ]


SPECS = {
    "boolq": Spec(
        "BoolQ",
        "boolq",
        ("accuracy",),
        text="{question}",
        text_pair="{passage}",
        prompt="{passage}\nQuestion: {question}?\nAnswer:",
    ),
    "cb": Spec(
        "CB",
        "cb",
        ("accuracy", "macro_f1"),
        ("entailment", "contradiction", "neutral"),
        ("true", "false", "neither"),
        text="{premise}",
        text_pair="{hypothesis}",
        prompt="{premise}\nQuestion: {hypothesis} true, false or neither?\nAnswer:",
    ),
    "rte": Spec(
        "RTE",
        "rte",
        ("accuracy",),
        ("entailment", "not_entailment"),
        ("true", "false"),
        text="{premise}",
        text_pair="{hypothesis}",
        prompt="{premise}\nQuestion: {hypothesis} true or false?\nAnswer:",
    ),
    "wic": Spec(
        "WiC",
        "wic",
        ("accuracy",),
        text="{word}: {sentence1}",
        text_pair="{sentence2}",
        prompt="Sentence 1: {sentence1}\nSentence 2: {sentence2}\n"
        'Question: Is the word "{word}" used with the same meaning in both sentences?\nAnswer:',
    ),
    "wsc": Spec(
        "WSC",
        "wsc.fixed",
        ("accuracy",),
        text="{text}",
        text_pair='Does "{span2_text}" refer to "{span1_text}"?',
        prompt='{text}\nQuestion: In the passage above, does "{span2_text}" refer to "{span1_text}"?\nAnswer:',
    ),
    "copa": Spec("COPA", "copa", ("choice_accuracy",), (0, 1), choice_labels=("choice1", "choice2"), examples=copa),
    "multirc": Spec("MultiRC", "multirc", ("f1a", "multirc_em"), (0, 1), examples=multirc),
    "record": Spec("ReCoRD", "record", ("record_f1", "record_em"), choice_labels=(), examples=record),
}
# the fields every row of a task's official jsonl files has, checked before anything loads
FIELDS = {
    "boolq": ("question", "passage", "label"),
    "cb": ("premise", "hypothesis", "label"),
    "rte": ("premise", "hypothesis", "label"),
    "wic": ("word", "sentence1", "sentence2", "label"),
    "wsc": ("text", "target", "label"),
    "copa": ("premise", "choice1", "choice2", "question", "label", "idx"),
    "multirc": ("passage", "idx"),
    "record": ("passage", "qas", "idx"),
}


def official_rows(name: str, row: dict) -> list[dict]:
    """An official jsonl row as the hub's flat rows: MultiRC one per answer option, ReCoRD one per
    query, labels as the hub's label ids. Field names and shapes follow the `super_glue` loading
    script of HF datasets (huggingface/datasets, datasets/super_glue/super_glue.py, _generate_examples)."""
    if name == "multirc":
        p = row["passage"]
        return [
            {
                "paragraph": p["text"],
                "question": q["question"],
                "answer": a["text"],
                "label": int(a["label"]),
                "idx": {"paragraph": row["idx"], "question": q["idx"], "answer": a["idx"]},
            }
            for q in p["questions"]
            for a in q["answers"]
        ]
    if name == "record":
        p = row["passage"]
        entities = sorted({p["text"][e["start"] : e["end"] + 1] for e in p["entities"]})  # `end` is inclusive
        return [
            {
                "passage": p["text"],
                "query": qa["query"],
                "entities": entities,
                "answers": sorted({a["text"] for a in qa.get("answers", [])}),
                "idx": {"passage": row["idx"], "query": qa["idx"]},
            }
            for qa in row["qas"]
        ]
    row = {**row, **row.get("target", {})}  # WSC keeps its spans under "target"
    return [{**row, "label": SPECS[name].classes.index(row["label"])}]


def rows(name: str, cfg, split: str) -> list[dict]:
    """The flat rows of the official `train` or `val` split."""
    spec = SPECS[name]
    if not cfg.data_dir:
        return hub_rows(cfg.hub_id, spec.hub_config, "train" if split == "train" else "validation")
    with open(Path(cfg.data_dir).expanduser() / spec.folder / f"{split}.jsonl", encoding="utf-8") as f:
        return [flat for line in f if line.strip() for flat in official_rows(name, json.loads(line))]


def examples(name: str, row: dict, form: str, split: str) -> list[Example]:
    spec = SPECS[name]
    if spec.examples:
        return spec.examples(row, form, split)
    return [
        Example(
            text=spec.text.format(**row),
            text_pair=spec.text_pair.format(**row),
            prompt=spec.prompt.format(**row),
            label=row["label"],
        )
    ]


def loader(name: str):
    spec = SPECS[name]

    def load(cfg, form) -> TaskData:
        train, test = (
            [e for row in rows(name, cfg, split) for e in examples(name, row, form, split)]
            for split in ("train", "val")
        )
        train, validation, test = held_out(train, test, cfg)
        own_choices = form == "text_to_text" and spec.choice_labels is not None
        labels = list(spec.choice_labels if own_choices else spec.labels)
        return TaskData(labels=labels, metrics=spec.metrics, train=train, validation=validation, test=test)

    return load


# placeholder rows of the tasks whose examples a function makes (the others' fields are in their templates)
PROBES = {
    "copa": [
        {"premise": "{premise}.", "choice1": "{Choice1}", "choice2": "I {choice2}", "question": q, "label": 0, "idx": 0}
        for q in ("cause", "effect")
    ],
    "multirc": [
        {
            "paragraph": "{paragraph} <b>{bold}</b><br>",
            "question": "{question}",
            "answer": "{answer}",
            "label": 0,
            "idx": {"paragraph": 0, "question": 0},
        }
    ],
    "record": [
        {
            "passage": "{passage}.\n@highlight\n{highlight}\n@highlight\n{highlight2}",
            "query": "{query} @placeholder",
            "entities": ["{entity1}", "{entity2}"],
            "answers": ["{entity2}"],
            "idx": {"passage": 0, "query": 0},
        }
    ],
}


def template(name: str):
    spec = SPECS[name]
    fields = {
        f for part in (spec.text, spec.text_pair, spec.prompt) for _, f, _, _ in string.Formatter().parse(part) if f
    }
    rows_ = PROBES.get(name) or [{**{f: f"{{{f}}}" for f in fields}, "label": 0}]
    return lambda: {
        "examples": {form: [e for row in rows_ for e in examples(name, row, form, "train")] for form in FORMS},
        "labels": spec.labels,
        "choice_labels": spec.choice_labels,
    }


def check(name: str):
    files = [f"{SPECS[name].folder}/{split}.jsonl" for split in ("train", "val")]
    return lambda cfg: check_source(cfg, files, dict.fromkeys(files, FIELDS[name]))


def _continuing(choice: str) -> str:
    """A choice that continues a sentence: its first letter lower-cased, except the pronoun I."""
    return choice if re.match(r"I\b", choice) else choice[:1].lower() + choice[1:]


def _plain(text: str) -> str:
    return " ".join(text.split())


for _name in SPECS:
    register(_name, schema=DataDirSchema, check=check(_name), template=template(_name))(loader(_name))
