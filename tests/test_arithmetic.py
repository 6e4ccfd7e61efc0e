import re
from collections import Counter

import pytest
from omegaconf import OmegaConf

from bench.errors import ConfigError
from bench.metrics import compute, final_answer
from bench.tasks import Example, load
from bench.tasks.arithmetic import OPS, TEMPLATES, WORDS, expression, solve
from bench.validate import validate

T5 = "model=smollm2-135m"  # a text-to-text model: arithmetic has no encoder form


def arithmetic(make_config, *overrides):
    return make_config("task=arithmetic", T5, *overrides).task


def key(e: Example) -> tuple:
    op, a, b = operands(e.target)
    return (op, *sorted((a, b))) if op in ("add", "mul") else (op, a, b)


def operands(target: str) -> tuple[str, int, int]:
    """The operation and operands a target restates: its first "a op b" (the last line for division)."""
    head = target.split("\n")[-1].removeprefix("Therefore, ")
    a, symbol, b = head.split(" = ")[0].split(" ")
    return {s: op for op, s in OPS.items()}[symbol], int(a), int(b)


def is_place_value(n: int) -> bool:
    return n > 0 and len(str(n).rstrip("0")) == 1


def recompute(target: str) -> None:
    """Check every number of a target with Python integers."""
    op, a, b = operands(target)
    answer = final_answer(target)
    if op in ("add", "sub"):
        assert target == f"{a} {OPS[op]} {b} = {answer}" and int(answer) == (a + b if op == "add" else a - b)
    elif op == "mul":
        segments = target.split(" = ")
        assert segments[0] == f"{a} * {b}" and int(segments[-1]) == a * b
        if len(segments) == 2:  # answered directly: only when an operand has one non-zero digit
            assert min(sum(d != "0" for d in str(n)) for n in (a, b)) <= 1
            return
        big, parts = re.fullmatch(r"(\d+) \* \(([\d +]+)\)", segments[1]).groups()
        big, parts = int(big), [int(p) for p in parts.split(" + ")]
        assert {big, sum(parts)} == {a, b} and big >= sum(parts) and len(parts) >= 2
        assert all(map(is_place_value, parts)) and parts == sorted(parts, reverse=True)
        assert segments[2] == " + ".join(f"{big} * {p}" for p in parts)
        terms = [int(t) for t in segments[3].split(" + ")]
        assert terms == [big * p for p in parts]
        for segment in segments[4:]:  # each step adds the first two partial sums
            terms = [terms[0] + terms[1], *terms[2:]]
            assert [int(t) for t in segment.split(" + ")] == terms
        assert terms == [a * b]
    else:
        q, r = divmod(a, b)
        assert answer == (f"{q} R {r}" if r else str(q))
        *steps, last = target.split("\n")
        if not steps:  # answered directly: a one-digit divisor or a trivial quotient
            assert last == f"{a} / {b} = {answer}" and (b < 10 or q == 0 or a == b)
            return
        assert last == f"Therefore, {a} / {b} = {answer}" and b >= 10
        left, multipliers = a, []
        for step in steps:
            x, b_, m, x2, p, n = map(
                int, re.fullmatch(r"(\d+) - (\d+) \* (\d+) = (\d+) - (\d+) = (\d+)", step).groups()
            )
            assert x == x2 == left and b_ == b and p == b * m and n == x - p and is_place_value(m)
            left, multipliers = n, multipliers + [m]
        assert sum(multipliers) == q and left == r and multipliers == sorted(multipliers, reverse=True)


def test_goat_formats():
    assert solve("add", 123, 456) == "123 + 456 = 579"
    assert solve("sub", 5, 12) == "5 - 12 = -7"
    assert solve("mul", 397, 4429) == (
        "397 * 4429 = 4429 * (300 + 90 + 7) = 4429 * 300 + 4429 * 90 + 4429 * 7"
        " = 1328700 + 398610 + 31003 = 1727310 + 31003 = 1758313"
    )
    assert solve("mul", 4429, 7) == "4429 * 7 = 31003"
    assert solve("mul", 4000, 397) == "4000 * 397 = 1588000"  # a round number: direct, as in Goat
    assert solve("div", 8914, 64) == (
        "8914 - 64 * 100 = 8914 - 6400 = 2514\n2514 - 64 * 30 = 2514 - 1920 = 594\n"
        "594 - 64 * 9 = 594 - 576 = 18\nTherefore, 8914 / 64 = 139 R 18"
    )
    assert solve("div", 100, 7) == "100 / 7 = 14 R 2"
    assert solve("div", 120360, 12) == (
        "120360 - 12 * 10000 = 120360 - 120000 = 360\n360 - 12 * 30 = 360 - 360 = 0\nTherefore, 120360 / 12 = 10030"
    )
    assert solve("div", 5, 64) == "5 / 64 = 0 R 5"


@pytest.mark.parametrize(
    "op,a,b",
    [
        ("mul", 0, 1234),
        ("mul", 10, 12),
        ("mul", 9999, 9999),
        ("mul", 1010, 2202),
        ("div", 64, 64),
        ("div", 999999, 10),
        ("div", 949574, 19),
        ("div", 0, 7),
        ("sub", 0, 9999999999999999),
        ("add", 9999999999999999, 1),
    ],
)
def test_edge_case_targets_are_correct(op, a, b):
    recompute(solve(op, a, b))


def test_every_generated_target_is_correct(make_config):
    data = load(
        arithmetic(make_config, "task.train_size=2000", "task.val_size=200", "task.test_size=400"), "text_to_text"
    )
    assert data.kind == "generate" and data.labels == []
    assert data.metrics == ("answer_exact_match", "rouge1", "rouge2", "rougeL")
    for e in data.train + data.validation + data.test:
        recompute(e.target)
        op, a, b = operands(e.target)
        assert e.category == op and e.label == -1 and e.prompt == e.text + "\n"
        assert re.search(rf"\b{a} ({re.escape(OPS[op])}|{WORDS[op]}) {b}\b", e.text)
    # both of Goat's shapes of multiplication and division occur: answered directly and step by step
    mul, div = ([e.target for e in data.train if e.category == op] for op in ("mul", "div"))
    assert any("(" in t for t in mul) and any("(" not in t for t in mul)
    assert any("Therefore" in t for t in div) and any("Therefore" not in t for t in div)


def test_same_seed_same_problems_other_seed_other_problems(make_config):
    cfg = arithmetic(make_config)
    data = load(cfg, "text_to_text")
    assert load(cfg, "text_to_text") == data
    other = load(OmegaConf.merge(cfg, {"split_seed": 1}), "text_to_text")
    assert {key(e) for e in other.test} != {key(e) for e in data.test}


def test_splits_never_share_a_problem_and_sizes_never_move_one(make_config):
    cfg = arithmetic(make_config, "task.train_size=3000", "task.val_size=300", "task.test_size=300")
    data = load(cfg, "text_to_text")
    keys = {s: [key(e) for e in getattr(data, s)] for s in ("train", "validation", "test")}
    assert all(len(set(k)) == len(k) for k in keys.values())  # no repeats inside a split, a + b and b + a included
    assert not set(keys["train"]) & set(keys["test"]) and not set(keys["train"]) & set(keys["validation"])
    assert not set(keys["validation"]) & set(keys["test"])
    assert (len(data.train), len(data.validation), len(data.test)) == (3000, 300, 300)
    assert Counter(e.category for e in data.test) == {op: 75 for op in OPS}  # balanced over the operations
    # a bigger training set keeps the held-out splits and extends the training set
    bigger = load(OmegaConf.merge(cfg, {"train_size": 5000}), "text_to_text")
    assert bigger.test == data.test and bigger.validation == data.validation
    assert set(data.train) <= set(bigger.train)


def test_operations_phrasing_and_digits_are_honoured(make_config):
    data = load(
        arithmetic(
            make_config,
            "task.operations=[mul]",
            "task.phrasing=natural",
            "task.digits.mul_nxm.a=[3,3]",
            "task.digits.mul_nxm.b=[3,3]",
            "~task.digits.mul_nx1",
        ),
        "text_to_text",
    )
    examples = data.train + data.validation + data.test
    assert {e.category for e in examples} == {"mul"}
    assert all(" times " in e.text and " * " not in e.text for e in examples)
    assert all(len(str(a)) == len(str(b)) == 3 for _, a, b in map(operands, (e.target for e in examples)))
    symbolic = load(arithmetic(make_config, "task.operations=[add,div]", "task.phrasing=symbolic"), "text_to_text")
    assert all(re.search(r"\d [+/] \d", e.text) for e in symbolic.test)
    assert {e.category for e in symbolic.train} == {"add", "div"}
    # a shape added from the command line joins the operation's turns
    added = load(
        arithmetic(make_config, "task.operations=[mul]", "+task.digits.mul_big={a:[6,6],b:[6,6]}"), "text_to_text"
    )
    assert any(len(str(a)) == len(str(b)) == 6 for _, a, b in map(operands, (e.target for e in added.train)))


def test_lengths_fit_max_length_and_max_new_tokens(make_config):
    """Characters bound tokens from above (a token is at least one character of this ASCII text)."""
    cfg = arithmetic(make_config, "task.train_size=3000")
    data = load(cfg, "text_to_text")
    targets = [e.target for e in data.train + data.test] + [solve("div", 949574, 19)]
    longest_prompt = 0
    for name, d in cfg.digits.items():
        op, a, b = name.split("_")[0], 10 ** d.a[1] - 1, max(10 ** d.b[1] - 1, 1)
        targets.append(solve(op, a, b))
        longest_prompt = max(
            longest_prompt,
            *(len(t.format(expression(op, a, b, p))) + 1 for t in TEMPLATES for p in ("symbolic", "natural")),
        )
    assert max(map(len, targets)) + 1 <= cfg.max_new_tokens  # + end-of-sequence
    assert longest_prompt <= cfg.max_length


def test_answer_exact_match_by_hand():
    examples = [
        Example("q", target=solve("add", 2, 3), category="add"),
        Example("q", target=solve("mul", 397, 4429), category="mul"),
        Example("q", target=solve("mul", 12, 34), category="mul"),
        Example("q", target=solve("div", 8914, 64), category="div"),
        Example("q", target=solve("div", 100, 7), category="div"),
    ]
    outputs = [
        "2 + 3 =  5 ",  # right, spacing aside
        "397 * 4429 = 1758313",  # right answer without the steps
        "12 * 34 = 34 * (10 + 2) = 340 + 68 = 418",  # wrong
        "8914 / 64 = 139 R 18",  # right
        "100 / 7 = 14",
    ]  # remainder missing: wrong
    assert final_answer("Therefore, 8914 / 64 = 139  R\n18") == "139 R 18"
    # a model not yet taught the format is read for its last number (Goat's remainder included)
    assert final_answer("no equals sign 7") == "7" and final_answer("The answer is 15.") == "15"
    assert final_answer("it is 12 R 3, I think") == "12 R 3" and final_answer("no number") == "no number"
    assert compute(["answer_exact_match"], examples, outputs) == pytest.approx(
        {
            "answer_exact_match": 3 / 5,
            "answer_exact_match/add": 1.0,
            "answer_exact_match/mul": 1 / 2,
            "answer_exact_match/div": 1 / 2,
        }
    )


def test_is_text_to_text_only_and_versioned(make_config):
    reason = validate(make_config("task=arithmetic"))  # the default model is an encoder: not applicable
    assert reason and "encoder" in reason
    cfg = make_config("task=arithmetic", T5)
    assert validate(cfg) is None and cfg.task.version == "1"


@pytest.mark.parametrize(
    "override,key",
    [
        ("task.operations=[add,pow]", "task.operations"),
        ("task.operations=[]", "task.operations"),
        ("task.phrasing=wordy", "task.phrasing"),
        ("task.digits.add.a=[5,2]", "task.digits.add.a"),
        ("task.digits.sub.b=[0,3]", "task.digits.sub.b"),
        ("task.digits.div_nxm.a=[1,2,3]", "task.digits.div_nxm.a"),
        ("+task.digits.pow={a:[1,2],b:[1,2]}", "task.digits.pow"),
        ("+task.digits.add.c=[1,2]", "task.digits.add"),
        ("task.digits.add.a=16", "task.digits.add.a"),
        ("task.digits.add.a=[1,x]", "task.digits.add.a"),
        ("~task.digits.add", "task.digits"),
        ("task.train_size=null", "task.train_size"),
        ("task.max_new_tokens=0", "task.max_new_tokens"),
    ],
)
def test_bad_values_name_their_key(make_config, override, key):
    with pytest.raises(ConfigError) as error:
        validate(make_config("task=arithmetic", T5, override))
    assert error.value.key == key


def test_too_few_distinct_problems_is_a_config_error(make_config):
    # one-digit additions: 55 distinct problems, fewer than the 128 the splits ask for
    cfg = arithmetic(make_config, "task.operations=[add]", "task.digits.add.a=[1,1]", "task.digits.add.b=[1,1]")
    with pytest.raises(ConfigError) as error:
        load(cfg, "text_to_text")
    assert error.value.key == "task.digits"
