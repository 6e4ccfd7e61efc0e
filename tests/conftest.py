import os
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from bench.compose import compose

# the tests never reach a hub: every asset they use ships in a pip package
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")

# xdist runs one worker per core: each keeps to its share, or the workers' torch threads fight over the cores
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

# small and fast, with tracking off, as every test run should be
FAST = [
    "tracking=none",
    "process=inline",
    "train.max_steps=2",
    "train.batch_size=8",
    "train.eval_every=0",
    "train.latency_samples=2",
    "train.profile_memory=false",
    "task.val_size=32",
    "task.test_size=32",
    "task.train_size=64",
]


def tiny_bert(tiny_models) -> tuple[str, ...]:
    """Overrides that run the tiny random BERT (tests/tiny.py): for tests of plumbing, not of accuracy."""
    return "model=bert-base-uncased", "model.source=hub", f"model.hub_id={tiny_models['bert']}"


@pytest.fixture
def make_config(tmp_path):
    """Compose a run config the way `python -m bench` does, results under tmp_path."""

    def make(*overrides: str, fast: bool = True, hydra: bool = False):
        return compose(
            [*(FAST if fast else []), f"results_dir={tmp_path}/results", *overrides], return_hydra_config=hydra
        )

    yield make
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """family -> folder of a tiny random model of that family (tests/tiny.py): plumbing only."""
    import tiny

    return tiny.save_all(tmp_path_factory.mktemp("tiny"))


FIXTURES = Path(__file__).parent / "fixtures"
# where each file-based task's hand-written files in its official layout live
FIXTURE_DIRS = {
    **{t: "superglue" for t in ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")},
    "sst2": "sst2",
    "imdb": "imdb",
}


@pytest.fixture
def task_config(make_config):
    """A validated task config reading the tests' own files, with every official test example."""
    from bench.validate import validate

    def make(task, *overrides):
        cfg = make_config(
            f"task={task}",
            f"task.data_dir={FIXTURES / FIXTURE_DIRS[task]}",
            "task.val_size=1",
            "task.test_size=null",
            *overrides,
        )
        validate(cfg)
        return cfg.task

    return make
