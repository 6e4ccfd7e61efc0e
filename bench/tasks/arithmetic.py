"""Integer arithmetic as in Goat (Liu & Low 2023, arXiv:2305.14201): a seeded generator of
addition, subtraction, multiplication and division problems, text-to-text only.

Targets follow Goat's step-by-step formats. Learnable problems are answered directly
("12 + 34 = 46", "4429 * 7 = 31003", "100 / 7 = 14 R 2"); multi-digit multiplication
decomposes the smaller operand into place values and sums the partial products pairwise:

    397 * 4429 = 4429 * (300 + 90 + 7) = 4429 * 300 + 4429 * 90 + 4429 * 7
               = 1328700 + 398610 + 31003 = 1727310 + 31003 = 1758313

and multi-digit division is long division, one line per non-zero quotient digit:

    8914 - 64 * 100 = 8914 - 6400 = 2514
    2514 - 64 * 30 = 2514 - 1920 = 594
    594 - 64 * 9 = 594 - 576 = 18
    Therefore, 8914 / 64 = 139 R 18

The final answer is the text after the last "=", which `answer_exact_match` scores, per
operation (Example.category); ROUGE-1, -2 and -L score the whole completion, the rationale's
overlap with Goat's steps (rouge-score's tokens: the numbers and words, not the operators).
Goat's targets restate the question in symbols; the question itself is symbolic
("What is 397 * 4429?") or in words ("What is 397 times 4429?").

Splits: one seeded stream of distinct problems; each problem's split is fixed by a hash of
(operation, operands), so train, validation and test never share a problem (a + b and b + a
count as one) and no size ever moves a problem between splits: each split takes the first
problems of the stream that hash into it, balanced over the operations.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, ListConfig

from bench.errors import ConfigError
from bench.tasks import Example, TaskData, TaskSchema, register

OPS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
WORDS = {"add": "plus", "sub": "minus", "mul": "times", "div": "divided by"}
PHRASINGS = ("symbolic", "natural", "mixed")
TEMPLATES = ("What is {}?", "Calculate {}.", "Compute {}.", "Please work out {}.", "Find the value of {}.", "Solve {}.")
TEST_SHARE, VAL_SHARE = 0.1, 0.1  # of the hash range; the rest is training
MAX_DIGITS = 30
INSTRUCTION = "Solve each arithmetic problem."


@dataclass
class ArithmeticSchema(TaskSchema):
    operations: list[str] = field(default_factory=lambda: list(OPS))
    # operand shapes by name "<op>" or "<op>_<anything>": {a: [min, max], b: [min, max]}, the digits of
    # the first operand (the dividend) and the second (the divisor); each operation takes its shapes
    # in turn. Untyped, so that `+task.digits.mul_big={a:[5,6],b:[5,6]}` can add one; `check` checks it.
    digits: dict[str, Any] = field(default_factory=dict)
    phrasing: str = "mixed"  # symbolic | natural | mixed (each question one or the other)


def check(cfg) -> None:
    if not cfg.operations or any(op not in OPS for op in cfg.operations):
        raise ConfigError("task.operations", list(cfg.operations), "a non-empty list of " + ", ".join(OPS))
    if cfg.phrasing not in PHRASINGS:
        raise ConfigError("task.phrasing", cfg.phrasing, "one of " + ", ".join(PHRASINGS))
    for name, d in cfg.digits.items():
        if name.split("_")[0] not in OPS:
            raise ConfigError(
                f"task.digits.{name}", name, "a shape named <op> or <op>_<anything>, op one of " + ", ".join(OPS)
            )
        if not isinstance(d, DictConfig) or set(d) != {"a", "b"}:
            raise ConfigError(f"task.digits.{name}", d, "{a: [min, max], b: [min, max]}")
        for side in ("a", "b"):
            r = list(d[side]) if isinstance(d[side], ListConfig) else [d[side]]
            if len(r) != 2 or not all(isinstance(x, int) for x in r) or not 1 <= r[0] <= r[1] <= MAX_DIGITS:
                raise ConfigError(
                    f"task.digits.{name}.{side}", r, f"[min, max] digits with 1 <= min <= max <= {MAX_DIGITS}"
                )
    for op in cfg.operations:
        if not _shapes(cfg, op):
            raise ConfigError(
                "task.digits", sorted(cfg.digits), f"a shape for operation {op} (a key '{op}' or '{op}_...')"
            )
    if cfg.train_size is None:
        raise ConfigError(
            "task.train_size", None, "a number of training problems to generate (a generator has no 'all')"
        )
    if cfg.max_new_tokens < 1:
        raise ConfigError("task.max_new_tokens", cfg.max_new_tokens, "a number of tokens >= 1")


def example(op: str, a: int, b: int, phrasing: str, template: int) -> Example:
    question = TEMPLATES[template].format(expression(op, a, b, phrasing))
    return Example(text=question, prompt=question + "\n", target=solve(op, a, b), category=op)


def template() -> dict:
    """Every operation in every phrasing and question template, with operands that take each target format."""
    return {
        "examples": [
            example(op, a, b, phrasing, t)
            for op in OPS
            for a, b in ((12, 34), (4429, 7), (397, 4429), (8914, 64))
            for phrasing in PHRASINGS[:2]
            for t in range(len(TEMPLATES))
        ],
        "instruction": INSTRUCTION,
    }


@register("arithmetic", schema=ArithmeticSchema, forms=("text_to_text",), check=check, template=template)
def load(cfg, form) -> TaskData:
    check(cfg)
    sizes = {"train": cfg.train_size, "validation": cfg.val_size, "test": cfg.test_size}
    ops = list(dict.fromkeys(cfg.operations))
    # per split, each operation's share (the first operations take the remainder)
    quota = {s: {op: n // len(ops) + (i < n % len(ops)) for i, op in enumerate(ops)} for s, n in sizes.items()}
    splits = {s: [] for s in sizes}
    needed, seed = sum(sizes.values()), cfg.split_seed
    for draws, problem in enumerate(problems(cfg, ops)):
        if problem is not None:  # None: a problem drawn before
            op, a, b, phrasing, template = problem
            s = split_of(seed, op, a, b)
            if quota[s][op]:
                quota[s][op] -= 1
                splits[s].append(example(op, a, b, phrasing, template))
                needed -= 1
                if not needed:
                    break
        if draws > 50 * sum(sizes.values()) + 10_000:
            left = {s: {op: n for op, n in q.items() if n} for s, q in quota.items() if any(q.values())}
            raise ConfigError(
                "task.digits",
                {k: dict(v) for k, v in cfg.digits.items()},
                f"digit ranges with enough distinct problems for the split sizes (still missing {left})",
            )
    return TaskData(
        labels=[],
        metrics=("answer_exact_match", "rouge1", "rouge2", "rougeL"),
        kind="generate",
        instruction=INSTRUCTION,
        **splits,
    )


def problems(cfg, ops):
    """Problems (op, a, b, phrasing, template index) in a stream fixed by task.split_seed, None for
    one drawn before; the operations take turns, and each operation's shapes take turns."""
    rng = random.Random(f"arithmetic:{cfg.split_seed}")
    # plain tuples: reading the config per draw would dominate the run time
    shapes = {op: [(tuple(d["a"]), tuple(d["b"])) for d in _shapes(cfg, op)] for op in ops}
    phrasings = ("symbolic", "natural") if cfg.phrasing == "mixed" else (cfg.phrasing,)
    seen = set()
    for i in itertools.count():
        op = ops[i % len(ops)]
        da, db = shapes[op][(i // len(ops)) % len(shapes[op])]
        a, b = _number(rng, da), _number(rng, db, low=1 if op == "div" else 0)
        phrasing = rng.choice(phrasings)
        template = rng.randrange(len(TEMPLATES))
        key = (op, *sorted((a, b))) if op in ("add", "mul") else (op, a, b)
        yield None if key in seen else (op, a, b, phrasing, template)
        seen.add(key)


def split_of(seed: int, op: str, a: int, b: int) -> str:
    if op in ("add", "mul"):  # commutative: a + b and b + a are one problem
        a, b = sorted((a, b))
    h = int.from_bytes(hashlib.sha256(f"{seed}:{op}:{a}:{b}".encode()).digest()[:8], "big") / 2**64
    return "test" if h < TEST_SHARE else "validation" if h < TEST_SHARE + VAL_SHARE else "train"


def expression(op: str, a: int, b: int, phrasing: str) -> str:
    return f"{a} {OPS[op] if phrasing == 'symbolic' else WORDS[op]} {b}"


def solve(op: str, a: int, b: int) -> str:
    """Goat's target for one problem."""
    head = f"{a} {OPS[op]} {b}"
    if op == "add":
        return f"{head} = {a + b}"
    if op == "sub":
        return f"{head} = {a - b}"
    if op == "mul":
        big, small = max(a, b), min(a, b)
        parts = place_values(small)
        if len(parts) < 2 or len(place_values(big)) < 2:  # a digit or a round number: learnable directly
            return f"{head} = {a * b}"
        products = [big * p for p in parts]
        steps = [f"{big} * ({' + '.join(map(str, parts))})", " + ".join(f"{big} * {p}" for p in parts)]
        while len(products) > 1:  # add the first two until one number is left
            steps.append(" + ".join(map(str, products)))
            products = [products[0] + products[1], *products[2:]]
        return " = ".join([head, *steps, str(products[0])])
    q, r = divmod(a, b)
    answer = f"{q} R {r}" if r else str(q)
    if b < 10 or q == 0 or a == b:  # n / 1 digit, and trivial quotients: learnable directly
        return f"{head} = {answer}"
    lines, left = [], a
    for m in place_values(q):
        lines.append(f"{left} - {b} * {m} = {left} - {b * m} = {left - b * m}")
        left -= b * m
    return "\n".join(lines) + f"\nTherefore, {head} = {answer}"


def place_values(n: int) -> list[int]:
    """397 -> [300, 90, 7]: the non-zero digits at their place value."""
    s = str(n)
    return [int(d) * 10 ** (len(s) - i - 1) for i, d in enumerate(s) if d != "0"]


def _shapes(cfg, op: str) -> list:
    return [d for name, d in cfg.digits.items() if name.split("_")[0] == op]


def _number(rng: random.Random, digits, low: int = 0) -> int:
    # digit count first, uniformly, as Goat does: otherwise nearly every number would be long
    n = rng.randint(digits[0], digits[1])
    return rng.randint(max(low, 10 ** (n - 1) if n > 1 else 0), 10**n - 1)
