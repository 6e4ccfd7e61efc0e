"""Every task through the runner on the text-to-text path (tiny random decoder and T5: plumbing
only), from the tests' own fixture files; the encoder path is covered per task in
test_superglue.py, test_sentiment_tasks.py and test_families.py."""

from pathlib import Path

import pytest

from bench.launch import launch
from bench.tasks import load

FIXTURES = Path(__file__).parent / "fixtures"
SUPERGLUE = ["boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc"]
TASKS = {
    **{t: [f"task.data_dir={FIXTURES / 'superglue'}", "task.val_size=1", "task.test_size=null"] for t in SUPERGLUE},
    "sst2": [f"task.data_dir={FIXTURES / 'sst2'}", "task.val_size=1", "task.test_size=null"],
    "imdb": [f"task.data_dir={FIXTURES / 'imdb'}", "task.val_size=1", "task.test_size=null"],
    "tweets": [],
    "arithmetic": ["task.train_size=32", "task.val_size=4", "task.test_size=8", "task.max_new_tokens=8"],
    "jsonl": [f"task.path={FIXTURES / 'jsonl' / 'capitals.jsonl'}", "task.val_size=2", "task.test_size=4"],
}
PRESETS = {"llama": "smollm2-135m", "t5": "flan-t5-small"}


@pytest.mark.slow  # a run of every task on each text-to-text family
@pytest.mark.parametrize("family", list(PRESETS))
@pytest.mark.parametrize("task", list(TASKS))
def test_one_step_and_an_evaluation_text_to_text(make_config, tiny_models, task, family):
    cfg = make_config(
        f"model={PRESETS[family]}",
        "model.source=hub",
        f"model.hub_id={tiny_models[family]}",
        f"task={task}",
        *TASKS[task],
        "train.batch_size=4",
        "train.max_steps=1",
    )
    rec = launch(cfg)
    assert rec.status == "ok", rec.error
    data = load(cfg.task, "text_to_text")
    assert rec.metrics.size == len(data.test) and rec.time.steps == 1
    assert all(0 <= rec.metrics[name] <= 1 for name in data.metrics)
    # the record shows what the model answered on the first test examples
    assert rec.predictions and len(rec.predictions) == min(20, len(data.test))


def test_generation_tasks_do_not_apply_to_encoders(make_config):
    rec = launch(make_config("task=arithmetic", "task.train_size=32", "task.val_size=4", "task.test_size=8"))
    assert rec.status == "not_applicable"
    assert "text generation" in rec.error.message and "encoder" in rec.error.message
