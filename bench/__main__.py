"""Hydra entry point: `python -m bench [group=option ...] [key=value ...]`."""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig

from bench import record
from bench.config import ConfigError, cpu_count, register_schemas, to_container

register_schemas()


def concurrent_jobs(hydra_cfg) -> int:
    """How many jobs the launcher runs at once: 1 for the default (basic) launcher."""
    launcher = hydra_cfg.launcher
    target = launcher.get("_target_", "")
    if "joblib" in target:
        n = launcher.get("n_jobs", -1)
        return cpu_count() if n in (-1, None) else n
    if target.endswith("submitit_launcher.LocalLauncher"):  # SLURM jobs get their own allocations
        return launcher.get("array_parallelism", 1)
    return 1


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from bench.runner import launch

    try:
        launch(cfg, concurrent_jobs(HydraConfig.get()))
    except ConfigError as e:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # one bad combination in a sweep is recorded and the sweep goes on
            config = to_container(cfg)
            record.write(record.path_for(config), record.new(config, "failed", error=record.error_of(e)))
            print(f"error: {e}", file=sys.stderr)
            return
        sys.exit(f"error: {e}")


def check_overrides(args: list[str]) -> None:
    """Hydra's parse error for a malformed override does not say which one; this does."""
    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        sys.exit(f"error: malformed override {e.override!r}: {e.message.splitlines()[0]}\n"
                 "expected key=value, group=option, +key=value or ~key; lists as key=[a,b] (quote them in the shell)")


if __name__ == "__main__":
    check_overrides(sys.argv[1:])
    main()
