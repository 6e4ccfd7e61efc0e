"""Hydra entry point: `python -m bench [group=option ...] [key=value ...]`."""

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig

from bench import launch, record
from bench.compose import CONF, compose, register_schemas, to_container
from bench.errors import ConfigError
from bench.machine import cpu_count

register_schemas()


class JobFailed(Exception):
    """A sweep job that did not end ok. Raised after its record is written: Hydra's sweeper runs the
    other jobs first, then reports the first such job and exits 1, so `python -m bench -m ... && next` stops."""


def concurrent_jobs(hydra_cfg) -> int | None:
    """How many jobs the launcher runs at once on this machine: 1 for the default (basic)
    launcher and for SLURM jobs (each gets its own allocation); None when unknown."""
    launcher = hydra_cfg.launcher
    target = launcher.get("_target_", "")
    if "joblib" in target:
        n = launcher.get("n_jobs", -1) or 1
        return n if n > 0 else max(1, cpu_count() + 1 + n)  # joblib: -1 all CPUs, -2 all but one
    if target.endswith("submitit_launcher.LocalLauncher") or "hydra_ray_launcher" in target:
        return None  # submitit's local executor starts every job at once; Ray as many as it has CPUs
    return 1


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Under hydra/sweeper=optuna a run's validation score (results.selection_score) is returned: the objective
    the sweeper maximizes."""
    try:
        # count and serve import torch and transformers, so each only in its own mode
        if cfg.mode == "count":  # parameters only, on the meta device: no weights, no training
            from bench import count  # deferred: torch and transformers, for this mode only

            count.launch(cfg)
        elif cfg.mode == "fit":  # every method's estimate against one memory, on the meta device
            from bench import whatfits  # deferred: torch and transformers, for this mode only

            whatfits.launch(cfg)
        elif cfg.mode == "serve":  # serving cost against the base model: no training
            from bench import serve  # deferred: torch and transformers, for this mode only

            if serve.launch(cfg).status != "ok":
                _fail("the serving measurement did not end ok")
        else:
            rec = launch.launch(cfg, concurrent_jobs(HydraConfig.get()))
            # a run that did not succeed (or runs elsewhere) fails the command: `python -m bench && next` stops
            if rec is None or rec.status not in ("ok", "not_applicable"):
                _fail(f"run {rec.run_id} ended {rec.status}" if rec else "the run is running in another process")
            if "optuna" in HydraConfig.get().sweeper.get("_target_", ""):  # the objective it maximizes
                from bench.results import selection_score  # deferred: pandas, for this sweeper only

                return selection_score(rec.dump())
    except ConfigError as e:
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            sys.exit(f"error: {e}")
        # one bad combination in a sweep is recorded (unless a record stands) and the sweep goes on
        print(f"error: {e}", file=sys.stderr)
        try:  # the error may be the results folder itself, or a name its path is made of
            config = to_container(cfg)
            path = _record_path(config)
            if not record.should_skip(record.read(path), config["force"], config["retry_failed"]):
                record.write(path, record.new(config, "failed", error=record.error_of(e)))
        except (OSError, ConfigError) as write_error:
            print(f"error: could not record it: {write_error}", file=sys.stderr)
        raise JobFailed(f"invalid configuration: {e}") from None


def _record_path(config: dict) -> Path:
    """Where the record of this config's mode goes (count and serve keep theirs apart)."""
    if config.get("mode") == "count":
        from bench.count import path_for  # deferred: torch, for this mode only
    elif config.get("mode") == "serve":
        from bench.serve import path_for  # deferred: torch, for this mode only
    else:
        path_for = record.path_for
    return path_for(config)


def _fail(why: str) -> None:
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        raise JobFailed(f"{why}; the sweep's other jobs ran (see their records)")
    sys.exit(1)


def check_overrides(args: list[str]) -> None:
    """Hydra's parse error for a malformed override does not say which one; this does."""
    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        sys.exit(
            f"error: malformed override {e.override!r}: {e.message.splitlines()[0]}\n"
            "expected key=value, group=option, +key=value or ~key; lists as key=[a,b] (quote them in the shell)"
        )


def print_help(args: list[str]) -> None:
    """`--help` in Hydra's layout (the header, the groups and their options, the composed config, the
    footer), from conf/ and one composition: Hydra's own deep-copies its config store once per group
    (2 s here) and lists our schemas as if they were options."""
    from hydra.errors import HydraException

    try:
        cfg = compose([a for a in args if not a.startswith("-")], return_hydra_config=True)
    except HydraException as e:  # an option that does not exist (method=nosuch): as a run would say it
        sys.exit(f"error: {e}")
    from omegaconf import OmegaConf, open_dict

    about = cfg.hydra.help
    with open_dict(cfg):
        del cfg.hydra
    groups = "\n".join(
        f"{d.name}: " + ", ".join(sorted(f.stem for f in d.glob("*.yaml")))
        for d in sorted(CONF.iterdir())
        if d.is_dir() and d.name != "hydra"
    )
    print(
        f"{about.header}\n== Configuration groups ==\nCompose your configuration from those groups (group=option)\n\n"
        f"{groups}\n\n\n== Config ==\nOverride anything in the config (foo.bar=value)\n\n"
        f"{OmegaConf.to_yaml(cfg)}\n\n{about.footer}\n"
    )


if __name__ == "__main__":
    check_overrides(sys.argv[1:])
    flags = {a for a in sys.argv[1:] if a.startswith("-")}
    if flags in ({"--help"}, {"-h"}):  # with Hydra's other flags (--cfg job, --config-dir ...), Hydra's own help
        try:
            print_help(sys.argv[1:])
            sys.stdout.flush()
        except BrokenPipeError:  # `--help | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
    else:
        main()
