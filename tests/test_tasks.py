from collections import Counter

from omegaconf import OmegaConf

from bench.tasks import Example, load, subsample


def test_subsample_is_stratified_and_seeded():
    examples = (
        [Example(f"a{i}", 0) for i in range(60)]
        + [Example(f"b{i}", 1) for i in range(30)]
        + [Example(f"c{i}", 2) for i in range(10)]
    )
    chosen = subsample(examples, 20, seed=3)
    assert Counter(e.label for e in chosen) == {0: 12, 1: 6, 2: 2}
    assert chosen == subsample(examples, 20, seed=3)
    assert chosen != subsample(examples, 20, seed=4)
    assert subsample(examples, None, seed=3) is examples


def test_subsample_hands_rounding_losses_to_largest_remainders():
    examples = (
        [Example(f"a{i}", 0) for i in range(5)]
        + [Example(f"b{i}", 1) for i in range(5)]
        + [Example(f"c{i}", 2) for i in range(5)]
    )
    assert sorted(Counter(e.label for e in subsample(examples, 7, seed=0)).values()) == [2, 2, 3]


def test_tweets_split_is_fixed_disjoint_and_deduplicated(make_config):
    cfg = make_config("task.train_size=500", "task.val_size=300", "task.test_size=400").task
    data = load(cfg)
    assert (len(data.train), len(data.validation), len(data.test)) == (500, 300, 400)
    texts = [e.text for split in (data.train, data.validation, data.test) for e in split]
    assert len(set(texts)) == len(texts)
    assert data.labels == ["negative", "neutral", "positive"]
    # the held-out splits do not depend on the training-set size
    bigger = load(OmegaConf.merge(cfg, {"train_size": 900}))
    assert bigger.test == data.test and bigger.validation == data.validation
    assert load(OmegaConf.merge(cfg, {"split_seed": 1})).test != data.test


def test_tweets_full_corpus_size(make_config):
    cfg = make_config("task.train_size=null").task
    data = load(cfg)
    # 38,158 rows, 915 duplicate texts dropped
    assert len(data.train) + len(data.validation) + len(data.test) == 38158 - 915
