"""Where conf/ is, and a run config composed from it: the one place that knows both.

`python -m bench` composes through `@hydra.main`; the search, the tools, `--help` and the tests compose
through `compose` here, with the same schemas registered first.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf, open_dict

from bench.config import ModelConfig, RunConfig, TrackingConfig, TrainConfig
from bench.methods import METHODS
from bench.tasks import TASKS, TaskSchema

CONF = Path(__file__).resolve().parents[1] / "conf"


def register_schemas() -> None:
    """The schemas conf/'s defaults lists name (`schema`, `<method>_schema`, `<task>_schema`), in Hydra's store."""
    cs = ConfigStore.instance()
    cs.store(name="schema", node=RunConfig)
    cs.store(group="model", name="schema", node=ModelConfig)
    cs.store(group="train", name="schema", node=TrainConfig)
    cs.store(group="tracking", name="schema", node=TrackingConfig)
    cs.store(group="task", name="schema", node=TaskSchema)
    for name, task in TASKS.items():
        if task.schema is not TaskSchema:
            cs.store(group="task", name=f"{name}_schema", node=task.schema)
    for name, method in METHODS.items():
        cs.store(group="method", name=f"{name}_schema", node=method.schema)


def compose(overrides: list[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """The run config of `python -m bench OVERRIDES`, composed outside a Hydra app (Hydra's errors raised)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_schemas()
    GlobalHydra.instance().clear()  # what an earlier composition in this process left
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def typed(config: dict) -> DictConfig:
    """A recorded config (`to_container`'s) in the typed form validation saw: the run schema with its method's
    and its task's own schemas, read-only, so that the stages read what was validated and change nothing.
    The task's content and template digests, added by `to_container`, are kept beside its schema's keys."""
    schema = OmegaConf.structured(RunConfig)
    with open_dict(schema):
        schema.method = OmegaConf.structured(METHODS[config["method"]["name"]].schema)
        schema.task = OmegaConf.structured(TASKS[config["task"]["name"]].schema)
    with open_dict(schema.task):
        cfg = OmegaConf.merge(schema, config)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def to_container(cfg: DictConfig) -> dict:
    """The run's config as recorded: resolved, with the digests of the user's data files that its
    task reads (`task.content_sha256`) and of its prompt template (`task.template_sha256`), so that a
    changed file or template is a new experiment with a new id."""
    config = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    task = TASKS.get((config.get("task") or {}).get("name"))
    if task is not None and task.content is not None:
        config["task"]["content_sha256"] = task.content(cfg.task)
    if task is not None and task.template is not None:
        config["task"]["template_sha256"] = task.template_sha256()
    return config


def method_config(cfg: DictConfig, name: str) -> DictConfig:
    """The settings of method `name` in this run: the run's `method` when it is this method, else its YAML."""
    if cfg.method.name == name:
        return cfg.method
    fields = OmegaConf.load(CONF / "method" / f"{name}.yaml")
    fields.pop("defaults", None)
    return OmegaConf.merge(OmegaConf.structured(METHODS[name].schema), fields)
