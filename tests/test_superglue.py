"""SuperGLUE loaders on hand-written files in the official layout (tests/fixtures/superglue), and its metrics."""

import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bench import metrics
from bench.errors import ConfigError
from bench.tasks import FORMS, Example, load, sources
from bench.validate import validate

FIXTURES = Path(__file__).parent / "fixtures" / "superglue"
TASKS = ["boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc"]
GROUPED = ["copa", "multirc", "record"]

# fixture sizes, in questions (sizes count questions): train.jsonl, val.jsonl
QUESTIONS = {
    "boolq": (5, 3),
    "cb": (5, 3),
    "copa": (5, 3),
    "multirc": (4, 2),
    "record": (3, 2),
    "rte": (5, 3),
    "wic": (5, 3),
    "wsc": (5, 3),
}


def questions(split):
    return {e.group if e.group is not None else (e.text, e.text_pair) for e in split}


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("form", FORMS)
def test_loads_in_both_forms(task_config, task, form):
    data = load(task_config(task), form)
    train, test = QUESTIONS[task]
    # val.jsonl is the test split; one training question is carved off for validation
    assert (len(questions(data.train)), len(questions(data.validation)), len(questions(data.test))) == (
        train - 1,
        1,
        test,
    )
    for e in data.train + data.validation + data.test:
        assert 0 <= e.label < len(data.choices(e))
        if form == "encoder":
            assert e.text and e.text_pair
        else:
            assert e.prompt and e.prompt == e.prompt.rstrip()
    assert set(data.metrics) <= set(metrics.METRICS)


@pytest.mark.parametrize("task", TASKS)
def test_both_forms_hold_the_same_questions(task_config, task):
    cfg = task_config(task, "task.train_size=2")
    encoder, text_to_text = load(cfg, "encoder"), load(cfg, "text_to_text")
    for split in ("train", "validation", "test"):
        assert questions(getattr(encoder, split)) == questions(getattr(text_to_text, split))


@pytest.mark.parametrize("task", GROUPED)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_groups_never_straddle_splits_and_stay_whole(task_config, task, form, seed):
    full = load(task_config(task, f"task.split_seed={seed}"), form)
    cut = load(task_config(task, f"task.split_seed={seed}", "task.train_size=1"), form)
    assert not questions(full.train) & questions(full.validation)
    assert len(questions(cut.train)) == 1
    # the one training question keeps every one of its examples
    group = cut.train[0].group
    assert cut.train == [e for e in full.train if e.group == group]


def test_official_rows_become_examples(task_config):
    copa = load(task_config("copa", "task.val_size=4"), "text_to_text")
    faucet = next(e for e in copa.test if e.text == "The man turned on the faucet.")
    assert faucet.prompt == "The man turned on the faucet so"
    assert faucet.choices == ("the toilet filled with water.", "water flowed from the spout.") and faucet.label == 1
    encoder = [e for e in load(task_config("copa", "task.val_size=4"), "encoder").test if e.group == faucet.group]
    assert [(e.text_pair, e.label) for e in encoder] == [
        ("so the toilet filled with water.", 0),
        ("so water flowed from the spout.", 1),
    ]

    multirc = load(task_config("multirc"), "text_to_text").test
    assert [e.label for e in multirc] == [1, 0, 0, 1, 0]
    assert multirc[0].text_pair.startswith("Sent 1: The library opens at nine on weekdays. Sent 2:")  # no <b>, <br>
    assert "Proposed answer: At ten\nIs the proposed answer correct?\nAnswer:" in multirc[0].prompt

    record = load(task_config("record"), "text_to_text").test
    # entity offsets are inclusive at the end: "Cape Canaveral", not "Cape Canavera"
    assert record[0].choices == ("Cape Canaveral", "Jezero Crater", "NASA", "Perseverance")
    assert record[0].answers == ("Jezero Crater",) and record[0].label == 1
    assert record[0].prompt.endswith(
        "Fill in the blank: Scientists hope samples from ____ will return to Earth\nAnswer:"
    )
    assert "\n@highlight" not in record[0].prompt and "February. Perseverance will search" in record[0].prompt
    binarized = [e for e in load(task_config("record"), "encoder").test if e.group == record[0].group]
    assert [(e.target, e.label) for e in binarized] == [
        ("Cape Canaveral", 0),
        ("Jezero Crater", 1),
        ("NASA", 0),
        ("Perseverance", 0),
    ]
    assert binarized[1].text == "Scientists hope samples from Jezero Crater will return to Earth"

    cb = load(task_config("cb"), "text_to_text")
    assert [cb.labels[e.label] for e in cb.test] == ["neither", "false", "true"]  # neutral, contradiction, entailment
    wsc = load(task_config("wsc"), "encoder").test  # spans come from the row's "target"
    assert wsc[0].text_pair == 'Does "they" refer to "city councilmen"?' and wsc[0].label == 1


def test_hub_rows_read_like_the_official_files(make_config, monkeypatch):
    """With task.data_dir unset, rows come from `datasets` in the hub's shape (label ids, flat MultiRC)."""
    from bench.tasks import superglue

    asked = []
    multirc = [
        {
            "paragraph": "<b>Sent 1: </b>It rained.<br>",
            "question": "Did it rain?",
            "answer": answer,
            "label": label,
            "idx": {"paragraph": 0, "question": q, "answer": a},
        }
        for q in range(3)
        for a, (answer, label) in enumerate([("Yes", 1), ("No", 0)])
    ]

    def hub_rows(hub_id, config, split):
        asked.append((hub_id, config, split))
        return multirc

    monkeypatch.setattr(superglue, "hub_rows", hub_rows)
    data = load(make_config("task=multirc", "task.val_size=1").task, "text_to_text")
    assert asked == [("aps/super_glue", "multirc", "train"), ("aps/super_glue", "multirc", "validation")]
    assert [(e.text, e.text_pair, e.label) for e in data.test[:2]] == [
        ("Did it rain? Yes", "Sent 1: It rained.", 1),
        ("Did it rain? No", "Sent 1: It rained.", 0),
    ]
    assert len(questions(data.train)) == 2 and len(questions(data.test)) == 3


def test_split_is_fixed_by_split_seed(task_config):
    cfg = task_config("boolq", "task.val_size=2")
    assert load(cfg) == load(cfg)
    firsts = {load(OmegaConf.merge(cfg, {"split_seed": s})).validation[0].text for s in range(8)}
    assert len(firsts) > 1


def test_rows_without_the_official_fields_are_named_before_loading(make_config, tmp_path):
    shutil.copytree(FIXTURES / "RTE", tmp_path / "RTE")
    (tmp_path / "RTE" / "val.jsonl").write_text('{"sentence1": "a", "sentence2": "b", "label": "entailment"}\n')
    with pytest.raises(ConfigError) as err:
        validate(make_config("task=rte", f"task.data_dir={tmp_path}"))
    assert err.value.key == "task.data_dir"
    assert (
        f"{tmp_path / 'RTE' / 'val.jsonl'} starts with fields sentence1, sentence2, label; "
        "expected premise, hypothesis, label" in str(err.value)
    )


def test_missing_folder_names_the_key(make_config, tmp_path, monkeypatch):
    cfg = make_config("task=copa", f"task.data_dir={tmp_path}")
    with pytest.raises(ConfigError, match="COPA/train.jsonl") as err:
        validate(cfg)
    assert err.value.key == "task.data_dir"

    # no folder: the hub through `datasets` (present or not on this machine), offline, nothing cached
    monkeypatch.setattr(sources, "find_spec", lambda name: object())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sources, "_hub_cached", lambda hub_id: False)
    with pytest.raises(ConfigError, match="offline.*aps/super_glue") as err:
        validate(make_config("task=record"))
    assert err.value.key == "task.data_dir"

    # no folder and no `datasets` package
    monkeypatch.setattr(sources, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="datasets") as err:
        validate(make_config("task=boolq"))
    assert err.value.key == "task.data_dir"


# metrics on fixed outputs; every expected number is worked out by hand in the comment beside it


def test_f1a_and_multirc_em():
    examples = [
        Example("q1 a", 1, group="q1"),
        Example("q1 b", 0, group="q1"),
        Example("q1 c", 1, group="q1"),
        Example("q2 a", 0, group="q2"),
        Example("q2 b", 1, group="q2"),
    ]
    outputs = [[0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4], [0.0, 1.0]]  # predicted 1, 1, 0, 0, 1
    # tp = 2 (q1 a, q2 b), fp = 1 (q1 b), fn = 1 (q1 c): F1a = 2*2 / (2*2 + 1 + 1) = 4/6
    assert metrics.f1a(examples, outputs) == pytest.approx(4 / 6)
    # q1: 1,1,0 against 1,0,1 wrong; q2: 0,1 against 0,1 right: EM = 1/2
    assert metrics.multirc_em(examples, outputs) == 0.5
    assert metrics.f1a(examples[3:4], [[1.0, 0.0]]) == 0.0  # no positive anywhere: 0, not a division by zero


def test_choice_accuracy_picks_the_best_option_of_each_question():
    binarized = [
        Example("p", 1, "c1", group="a"),
        Example("p", 0, "c2", group="a"),
        Example("r", 1, "c1", group="b"),
        Example("r", 0, "c2", group="b"),
    ]
    outputs = [[0.0, 2.0], [1.0, 2.0], [0.5, 0.0], [0.0, 1.0]]
    # positive scores: a: 2, 1 -> picks c1 (label 1, right); b: -0.5, 1 -> picks c2 (label 0, wrong): 1/2
    assert metrics.choice_accuracy(binarized, outputs) == 0.5
    # per example, accuracy would be 1/4: only the first example's argmax matches its label
    assert metrics.accuracy(binarized, outputs) == 0.25
    # with its own choices, an example is one question: argmax 1, 0 against labels 1, 1: 1/2
    own = [Example("p", 1, choices=("x", "y"), group="a"), Example("r", 1, choices=("x", "y"), group="b")]
    assert metrics.choice_accuracy(own, [[0.0, 1.0], [3.0, 1.0]]) == 0.5


def test_record_f1_and_em_in_both_forms():
    queries = [
        (("Jezero Crater", "NASA"), ("Jezero crater",)),
        (("Arsenal", "Olivier Giroud"), ("Giroud", "Arsenal")),
        (("Chelsea", "The Emirates"), ("Emirates",)),
    ]
    picked = ["Jezero Crater", "Olivier Giroud", "The Emirates"]
    # 1: "jezero crater" == "jezero crater": F1 1, EM 1
    # 2: "olivier giroud" against "giroud": 1 shared token, P 1/2, R 1, F1 2*(1/2)/(3/2) = 2/3;
    # against "arsenal": 0; EM 0
    # 3: "the emirates" loses its article: "emirates" == "emirates": F1 1, EM 1
    # F1 = (1 + 2/3 + 1) / 3 = 8/9, EM = 2/3
    # (the ReCoRD metrics read the chosen entity and the answers, not the label)
    text_to_text = [
        Example("q", 0, choices=choices, answers=answers, group=str(i)) for i, (choices, answers) in enumerate(queries)
    ]
    scores = [[1.0 if c == p else 0.0 for c in choices] for (choices, _), p in zip(queries, picked)]
    assert metrics.record_f1(text_to_text, scores) == pytest.approx(8 / 9)
    assert metrics.record_em(text_to_text, scores) == pytest.approx(2 / 3)
    encoder, outputs = [], []
    for i, ((choices, answers), p) in enumerate(zip(queries, picked)):
        for c in choices:
            encoder.append(Example(c, int(c in answers), group=str(i), target=c, answers=answers))
            outputs.append([0.0, 1.0] if c == p else [1.0, 0.0])
    assert metrics.record_f1(encoder, outputs) == pytest.approx(8 / 9)
    assert metrics.record_em(encoder, outputs) == pytest.approx(2 / 3)


def test_squad_normalisation():
    assert metrics.squad_normal("The  Emirates, an arena!") == "emirates arena"
    assert metrics.token_f1("Barack Obama", "President Obama") == pytest.approx(0.5)  # 1 shared of 2 and 2: P = R = 1/2


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_a_real_training_step_and_evaluation_on_the_encoder_path(make_config, task):
    from bench.launch import launch

    rec = launch(
        make_config(
            f"task={task}", f"task.data_dir={FIXTURES}", "task.val_size=1", "task.test_size=null", "train.batch_size=4"
        )
    )
    assert rec.status == "ok", rec.error
    data = load(OmegaConf.create(rec.config["task"]), "encoder")
    assert rec.metrics.size == len(data.test) and rec.time.steps == 2
    assert all(0 <= rec.metrics[name] <= 1 for name in data.metrics)
