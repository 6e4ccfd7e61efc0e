"""Metrics computed in the project (the `evaluate` library fetches metric scripts from a hub).

Every metric takes the examples and the model's outputs on them, one output per example:
for classify tasks a score per choice (logits for an encoder head, log-likelihoods for rank
classification), for generate tasks the generated text. Tasks whose examples carry a
`category` also get each metric per category, as `<metric>/<category>`.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import astuple
from functools import partial

from bench.tasks import Example


def chosen(outputs: Sequence[Sequence[float]]) -> list[int]:
    """The highest-scoring choice of each example (the first on ties)."""
    return [max(range(len(s)), key=s.__getitem__) for s in outputs]


def accuracy(examples: Sequence[Example], outputs: Sequence) -> float:
    _same_length(examples, outputs)
    return sum(p == e.label for p, e in zip(chosen(outputs), examples)) / len(examples)


def macro_f1(examples: Sequence[Example], outputs: Sequence) -> float:
    """Unweighted mean of per-class F1 over the classes present in targets or predictions
    (scikit-learn's f1_score(average="macro") convention)."""
    _same_length(examples, outputs)
    predictions, targets = chosen(outputs), [e.label for e in examples]
    scores = []
    for c in sorted(set(targets) | set(predictions)):
        tp = sum(p == c and t == c for p, t in zip(predictions, targets))
        fp = sum(p == c and t != c for p, t in zip(predictions, targets))
        fn = sum(p != c and t == c for p, t in zip(predictions, targets))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


def exact_hits(examples: Sequence[Example], outputs: Sequence[str]) -> list[bool]:
    """Per example: generated text equal to the target, ignoring surrounding whitespace."""
    _same_length(examples, outputs)
    return [o.strip() == e.target.strip() for o, e in zip(outputs, examples)]


def exact_match(examples: Sequence[Example], outputs: Sequence[str]) -> float:
    hits = exact_hits(examples, outputs)
    return sum(hits) / len(hits)


def final_answer(text: str) -> str:
    """The text after the last "=", whitespace-normalised ("139 R 18" from Goat's division); in a
    text without "=" (a model not yet taught the format: "The answer is 15."), its last number."""
    if "=" not in text:
        numbers = re.findall(r"-?\d+(?: R \d+)?", " ".join(text.split()))
        text = numbers[-1] if numbers else text
    return " ".join(text.rsplit("=", 1)[-1].split())


def answer_hits(examples: Sequence[Example], outputs: Sequence[str]) -> list[bool]:
    """Per example: final answer of the generation equal to the target's, whatever the steps before it."""
    _same_length(examples, outputs)
    return [final_answer(o) == final_answer(e.target) for o, e in zip(outputs, examples)]


def answer_exact_match(examples: Sequence[Example], outputs: Sequence[str]) -> float:
    hits = answer_hits(examples, outputs)
    return sum(hits) / len(hits)


ROUGE = ("rouge1", "rouge2", "rougeL")


def rouge_scores(kind: str, examples: Sequence[Example], outputs: Sequence[str]) -> list[float]:
    """Per example: the ROUGE F-measure (`kind`: rouge1, rouge2 or rougeL) of the generation against the target, by
    Google's rouge-score (the reference reimplementation of ROUGE-1.5.5, as the LoRA paper's SAMSum table used),
    with Porter stemming. Its tokenizer keeps lower-cased letters and digits only: "12 + 3 = 15" is 12, 3, 15."""
    from rouge_score.rouge_scorer import RougeScorer

    _same_length(examples, outputs)
    scorer = RougeScorer([kind], use_stemmer=True)
    return [scorer.score(e.target, o)[kind].fmeasure for o, e in zip(outputs, examples)]


def _mean_rouge(kind: str, examples: Sequence[Example], outputs: Sequence[str]) -> float:
    scores = rouge_scores(kind, examples, outputs)
    return sum(scores) / len(scores)


def _best_options(examples: Sequence[Example], outputs: Sequence) -> list[Example]:
    """Binarized multiple choice (one example per option, a question's options sharing a `group`):
    each question's option with the highest positive score, score[1] - score[0] (the first on ties)."""
    best: dict = {}
    for e, s in zip(examples, outputs):
        if e.group not in best or s[1] - s[0] > best[e.group][0]:
            best[e.group] = (s[1] - s[0], e)
    return [e for _, e in best.values()]


def choice_accuracy(examples: Sequence[Example], outputs: Sequence) -> float:
    """Share of multiple-choice questions answered right (COPA). An example with its own `choices` is
    one question; binarized examples (a `group`, no choices) are the options of one, and the question
    is right when its best option (see _best_options) has label 1."""
    _same_length(examples, outputs)
    if examples[0].choices is not None or examples[0].group is None:
        return accuracy(examples, outputs)
    picks = _best_options(examples, outputs)
    return sum(e.label == 1 for e in picks) / len(picks)


def f1a(examples: Sequence[Example], outputs: Sequence) -> float:
    """MultiRC's F1a: binary F1 of the positive class (label 1) over all answer options."""
    _same_length(examples, outputs)
    pairs = list(zip(chosen(outputs), (e.label for e in examples)))
    tp = sum(p == 1 and t == 1 for p, t in pairs)
    fp = sum(p == 1 and t == 0 for p, t in pairs)
    fn = sum(p == 0 and t == 1 for p, t in pairs)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def multirc_em(examples: Sequence[Example], outputs: Sequence) -> float:
    """MultiRC's EM: share of questions (examples sharing a `group`) with every answer option right."""
    _same_length(examples, outputs)
    right: dict = {}
    for e, p in zip(examples, chosen(outputs)):
        right[e.group] = right.get(e.group, True) and p == e.label
    return sum(right.values()) / len(right)


def squad_normal(text: str) -> str:
    """SQuAD v1.1's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def token_f1(prediction: str, gold: str) -> float:
    p, g = squad_normal(prediction).split(), squad_normal(gold).split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def _record_answers(examples: Sequence[Example], outputs: Sequence) -> list[tuple[str, tuple[str, ...]]]:
    """(predicted entity, gold answers) per ReCoRD query: the best of the example's `choices`
    (text_to_text), or the `target` of the query's best binarized candidate (encoder)."""
    if examples[0].choices is not None:
        return [(e.choices[c], e.answers) for e, c in zip(examples, chosen(outputs))]
    return [(e.target, e.answers) for e in _best_options(examples, outputs)]


def record_f1(examples: Sequence[Example], outputs: Sequence) -> float:
    """ReCoRD's F1: token F1 against the best-matching gold answer, averaged over queries."""
    _same_length(examples, outputs)
    answered = _record_answers(examples, outputs)
    return sum(max(token_f1(p, a) for a in answers) for p, answers in answered) / len(answered)


def record_em(examples: Sequence[Example], outputs: Sequence) -> float:
    """ReCoRD's EM: share of queries whose prediction equals a gold answer, after normalisation."""
    _same_length(examples, outputs)
    answered = _record_answers(examples, outputs)
    return sum(any(squad_normal(p) == squad_normal(a) for a in answers) for p, answers in answered) / len(answered)


def _same_length(examples, outputs) -> None:
    if len(examples) != len(outputs) or not examples:
        raise ValueError(
            f"need equal, non-zero numbers of examples and outputs, got {len(examples)} and {len(outputs)}"
        )


METRICS = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "exact_match": exact_match,
    "answer_exact_match": answer_exact_match,
    "choice_accuracy": choice_accuracy,
    "f1a": f1a,
    "multirc_em": multirc_em,
    "record_f1": record_f1,
    "record_em": record_em,
    **{kind: partial(_mean_rouge, kind) for kind in ROUGE},
}


# generate-task metrics that are a mean over examples of a hit (0 or 1) or a score in [0, 1]: what per-example
# results keep for them ("hits", the name records have used since exact match was the only one)
HITS = {
    "exact_match": exact_hits,
    "answer_exact_match": answer_hits,
    **{kind: partial(rouge_scores, kind) for kind in ROUGE},
}


def fingerprint(examples: Sequence[Example]) -> str:
    """A hash of the examples, in order: two runs may be paired example by example only when it matches."""
    return hashlib.sha256(json.dumps([astuple(e) for e in examples], default=str).encode()).hexdigest()[:16]


def per_example(
    kind: str,
    names: Sequence[str],
    examples: Sequence[Example],
    outputs: Sequence,
    given: Sequence[Example] | None = None,
) -> dict:
    """The compact per-example test results that analysis bootstraps and pairs: the gold and the
    chosen choice of each example (classify tasks), or each exact-match metric's hit and each ROUGE score (generate).
    The fingerprint is of `given`, the test examples as the task gave them, where a method rewrote them."""
    if kind == "generate":
        results = {"hits": {n: [_compact(h) for h in HITS[n](examples, outputs)] for n in names if n in HITS}}
    else:
        results = {"gold": [e.label for e in examples], "predicted": chosen(outputs)}
    return {"fingerprint": fingerprint(given or examples), **results}


def _compact(hit: bool | float) -> int | float:
    """A hit as 0 or 1, a score to four places: the record keeps one per test example."""
    return int(hit) if isinstance(hit, bool) else round(hit, 4)


def compute(names: Sequence[str], examples: Sequence[Example], outputs: Sequence) -> dict[str, float]:
    scores = {name: METRICS[name](examples, outputs) for name in names}
    by_category = defaultdict(list)
    for i, e in enumerate(examples):
        if e.category is not None:
            by_category[e.category].append(i)
    for category, rows in sorted(by_category.items()):
        subset, sub_outputs = [examples[i] for i in rows], [outputs[i] for i in rows]
        scores.update({f"{name}/{category}": METRICS[name](subset, sub_outputs) for name in names})
    return scores
