"""The training loop: early stopping keeps the best weights; the learning-rate schedules; what else used the machine
while it trained; training rows tokenized as batches read them."""

import time

import pytest
import torch
from conftest import tiny_bert
from test_families import run_config

from bench import batching
from bench.launch import launch
from bench.runner import build
from bench.train import warmup_then

# a learning rate high enough that validation accuracy peaks early and then falls
ES = [
    "method=full_ft",
    "method.lr=3e-4",
    "train.lr_schedule=constant",
    "train.warmup_ratio=0",
    "train.max_steps=16",
    "train.eval_every=2",
]


@pytest.mark.slow
def test_early_stopping_restores_the_best_weights(make_config):
    stopped = launch(make_config(*ES, "train.early_stopping_patience=2"))
    assert stopped.status == "ok", stopped.error
    best, ran = stopped.time.best_step, stopped.time.steps
    evaluations = [v for v in stopped.validation if not v.get("final")]
    assert best < ran < 16  # it stopped early, at a later step than the best
    assert ran == best + 2 * 2  # two evaluations without improvement
    assert max(evaluations, key=lambda v: v["accuracy"])["step"] == best
    # the final validation scores the restored weights: the best evaluation's score, at its step
    final = stopped.validation[-1]
    assert final["final"] and final["step"] == best
    assert final["accuracy"] == pytest.approx(max(v["accuracy"] for v in evaluations))

    # a run trained for exactly best_step steps, with nothing restored, scores the same on test
    rerun = launch(make_config(*ES, f"train.max_steps={best}", "train.eval_every=0"))
    assert rerun.time.best_step is None
    assert rerun.per_example == stopped.per_example
    assert rerun.metrics == stopped.metrics


def test_early_stopping_needs_validation_during_training(make_config):
    from bench.errors import ConfigError
    from bench.validate import validate

    with pytest.raises(ConfigError, match=r"train.eval_every=0 is not valid: expected a number of steps >= 1: early"):
        validate(make_config("train.early_stopping_patience=2", "train.eval_every=0"))
    with pytest.raises(ConfigError, match=r"train.lr_schedule='cosine' is not valid: expected one of constant, linear"):
        validate(make_config("train.lr_schedule=cosine"))


def test_schedules():
    linear, constant = warmup_then("linear", 10, 2), warmup_then("constant", 10, 2)
    assert [linear(s) for s in range(0, 11, 2)] == [0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
    assert [constant(s) for s in (0, 1, 2, 9)] == [0.5, 1.0, 1.0, 1.0]


@pytest.mark.slow
def test_the_loop_overfits_a_handful_of_examples(make_config):
    # eight tweets seen thirty times: a loop that stalls or climbs cannot pass this
    rec = launch(
        make_config(
            "method=full_ft",
            "method.lr=1e-4",
            "task.train_size=8",
            "task.max_length=32",
            "train.batch_size=8",
            "train.max_steps=30",
            "train.log_every=1",
            "train.warmup_ratio=0",
            "train.lr_schedule=constant",
        )
    )
    losses = [loss for _, loss in rec.losses]
    assert len(losses) == 30 and losses[0] > 0.9  # about ln 3 = 1.10 at the start: three classes
    assert max(losses[-5:]) < 0.1 * losses[0]


def test_another_process_using_the_cpus_makes_the_machine_busy():
    import subprocess
    import sys
    import time

    from bench.measure import MachineLoad

    out = {}
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # started
        with MachineLoad(out):
            time.sleep(1.5)  # this process idles; the spinner takes about one CPU
    finally:
        spinner.kill()
        spinner.wait()
    assert out["busy"] and out["other_processes_cpus"] >= 0.5, out


@pytest.mark.parametrize("family", ["bert", "llama", "t5"])
def test_training_rows_are_tokenized_when_read_and_equal_the_whole_set_tokenized(make_config, tiny_models, family):
    cfg = run_config(make_config, tiny_models, family)
    built = build(cfg)
    task, tokenizer, architecture = built.task, built.tokenizer, built.architecture
    loader = batching.train_loader(task, tokenizer, architecture, cfg.task, 4, cfg.seed)
    first = next(iter(loader))
    read = loader.dataset.read()
    assert len(read) == 4 < len(task.train)  # one batch read, one batch tokenized
    eager = batching.training_rows(
        task, task.train, tokenizer, architecture, cfg.task.max_length, cfg.task.max_new_tokens
    )
    expected = batching.pad([{**eager[i], "index": i} for i in first["index"].tolist()], tokenizer.pad_token_id)
    assert first.keys() == expected.keys() and all(torch.equal(first[k], expected[k]) for k in first)


def test_reading_batches_is_data_time_not_step_time(make_config, tiny_models, monkeypatch):
    # here a training row takes 50 ms to tokenize, on its first read: the data stage's, not the timed steps'
    tokenize = batching.training_rows

    def slow(*args, **kwargs):
        time.sleep(0.05)
        return tokenize(*args, **kwargs)

    monkeypatch.setattr(batching, "training_rows", slow)
    rec = launch(make_config(*tiny_bert(tiny_models)))
    t = rec.time
    assert t.data_seconds >= 0.05 * t.examples_seen > t.train_seconds
    assert t.stages.seconds["data"] > t.data_seconds


def test_length_grouped_batches_read_every_example_once_a_pass_in_a_seeded_order():
    lengths = [(7 * i) % 97 for i in range(992)]
    batches = list(batching.LengthGroupedBatches(lengths.__getitem__, 992, 8, torch.Generator().manual_seed(0)))
    assert len(batches) == 124 and sorted(i for b in batches for i in b) == list(range(992))
    assert batches == list(batching.LengthGroupedBatches(lengths.__getitem__, 992, 8, torch.Generator().manual_seed(0)))
    # each batch comes from one of 4 groups of 248 (31 batches) sorted by length: its lengths lie close
    # together (0 to 96 in all)
    assert max(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) <= 8
    assert sorted(batches[0]) != sorted(range(8))  # and the order is shuffled, not the examples' own


def test_a_small_set_grouped_by_length_gets_other_batches_each_pass():
    # 200 examples in batches of 8: one group of 50 batches would be the whole set, sorted alike each pass
    lengths = [(7 * i) % 97 for i in range(200)]
    passes = batching.LengthGroupedBatches(lengths.__getitem__, 200, 8, torch.Generator().manual_seed(0))
    first, second = ({tuple(sorted(b)) for b in passes} for _ in range(2))
    assert len(first & second) < 0.2 * len(first)


def test_a_run_grouped_by_length_is_its_own_run(make_config, tiny_models):
    grouped = launch(make_config(*tiny_bert(tiny_models), "train.group_by_length=true"))
    plain = launch(make_config(*tiny_bert(tiny_models)))
    assert grouped.status == plain.status == "ok" and grouped.run_id != plain.run_id
    assert grouped.config["train"]["group_by_length"] is True


@pytest.mark.parametrize("family", ["bert", "t5"])
def test_grouping_by_length_pads_less(make_config, tiny_models, family):
    cfg = run_config(make_config, tiny_models, family, "task.train_size=256", "task.max_length=128")  # none cut short
    built = build(cfg)
    task, tokenizer, architecture = built.task, built.tokenizer, built.architecture

    def read(group: bool) -> list[dict]:
        batches = list(batching.train_loader(task, tokenizer, architecture, cfg.task, 8, cfg.seed, group))
        assert sorted(i for b in batches for i in b["index"].tolist()) == list(range(len(task.train)))
        return batches

    def padding(batches) -> float:
        return 1 - sum(int(b["attention_mask"].sum()) for b in batches) / sum(b["input_ids"].numel() for b in batches)

    grouped, plain = read(True), read(False)
    assert padding(grouped) < 0.5 * padding(plain)

    def groups(batches) -> list[set[int]]:  # the examples of each 8 batches: one group here (256 examples of 8)
        return [{i for b in batches[g : g + 8] for i in b["index"].tolist()} for g in range(0, len(batches), 8)]

    assert groups(grouped) == groups(plain)  # the same seed shuffles alike: grouping regroups the same examples
