"""Hydra entry point: `python -m bench [group=option ...] [key=value ...]`."""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from bench import record
from bench.config import ConfigError, register_schemas, to_container

register_schemas()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from bench.runner import launch

    try:
        launch(cfg)
    except ConfigError as e:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # one bad combination in a sweep is recorded and the sweep goes on
            config = to_container(cfg)
            record.write(record.path_for(config), record.new(config, "failed", error=record.error_of(e)))
            print(f"error: {e}", file=sys.stderr)
            return
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
