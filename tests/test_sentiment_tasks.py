"""SST-2 and IMDB loaders on hand-written files in the GLUE and aclImdb layouts (tests/fixtures)."""

from collections import Counter
from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.tasks import FORMS, load, sources
from bench.validate import validate

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("form", FORMS)
def test_sst2_dev_is_the_test_split_and_train_is_deduplicated(task_config, form):
    data = load(task_config("sst2"), form)
    assert data.labels == ["negative", "positive"] and data.metrics == ("accuracy",)
    # dev.tsv: 4 sentences; train.tsv: 9 rows, one repeated and one also in dev.tsv: 7 left, 1 to validation
    assert (len(data.train), len(data.validation), len(data.test)) == (6, 1, 4)
    texts = [e.text for e in data.train + data.validation]
    assert len(set(texts)) == len(texts) and not set(texts) & {e.text for e in data.test}
    dev = data.test[1]
    assert (dev.text, dev.label) == ("unflinchingly bleak and desperate", 0)
    assert dev.prompt == "Review: unflinchingly bleak and desperate\nSentiment:"


@pytest.mark.parametrize("form", FORMS)
def test_imdb_reads_the_aclimdb_layout(task_config, form):
    data = load(task_config("imdb"), form)
    # train: 3 pos + 3 neg files, one pos review also in test/ (unsup/ is not read): 5 left, 1 to validation
    assert (len(data.train), len(data.validation), len(data.test)) == (4, 1, 4)
    assert Counter(e.label for e in data.test) == {0: 2, 1: 2}
    every = data.train + data.validation + data.test
    assert not any("<br />" in e.text for e in every)
    assert not any("1933" in e.text for e in every)  # the unsup review
    costner = next(e for e in data.test if "Costner" in e.text)
    assert (
        costner.label == 0
        and costner.prompt.startswith("Review: Once again Mr. Costner")
        and costner.prompt.endswith("\nSentiment:")
    )


def test_sizes_subsample_train_and_test(task_config):
    data = load(task_config("sst2", "task.train_size=4", "task.test_size=2"))
    # 6 training sentences cut to 4 (stratified by label, as bench.tasks.subsample), 4 dev sentences to 2, by split_seed
    assert (len(data.train), len(data.test)) == (4, 2)
    assert data.test == load(task_config("sst2", "task.train_size=4", "task.test_size=2")).test
    full = load(task_config("sst2"))
    assert set(data.train) <= set(full.train) and data.validation == full.validation


def test_a_tsv_with_another_header_is_named_before_loading(make_config, tmp_path):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\nfine\t1\n")
    (tmp_path / "dev.tsv").write_text("label\tcontent\n1\tfine\n")
    with pytest.raises(ConfigError) as err:
        validate(make_config("task=sst2", f"task.data_dir={tmp_path}"))
    assert err.value.key == "task.data_dir"
    assert f"{tmp_path / 'dev.tsv'} starts with fields label, content; expected sentence, label" in str(err.value)


@pytest.mark.parametrize("task, missing", [("sst2", "dev.tsv"), ("imdb", "test/neg")])
def test_missing_folder_names_the_key(make_config, tmp_path, monkeypatch, task, missing):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\n")
    for folder in ("train/pos", "train/neg", "test/pos"):
        (tmp_path / folder).mkdir(parents=True)
    with pytest.raises(ConfigError, match=missing) as err:
        validate(make_config(f"task={task}", f"task.data_dir={tmp_path}"))
    assert err.value.key == "task.data_dir"

    # no folder: the hub through `datasets` (present or not on this machine), offline, nothing cached
    monkeypatch.setattr(sources, "find_spec", lambda name: object())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sources, "_hub_cached", lambda hub_id: False)
    with pytest.raises(ConfigError, match="offline") as err:
        validate(make_config(f"task={task}"))
    assert err.value.key == "task.data_dir"


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sst2", "imdb"])
def test_a_real_training_step_and_evaluation_on_the_encoder_path(make_config, task):
    from bench.launch import launch

    rec = launch(
        make_config(
            f"task={task}",
            f"task.data_dir={FIXTURES / task}",
            "task.val_size=1",
            "task.test_size=null",
            "train.batch_size=4",
        )
    )
    assert rec.status == "ok", rec.error
    assert rec.metrics.size == 4 and 0 <= rec.metrics.accuracy <= 1 and rec.time.steps == 2
