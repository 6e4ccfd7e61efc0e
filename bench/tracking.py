"""Weights & Biases mirror of each run. Offline mode by default writes a real run folder that
`wandb sync` uploads later. Tracking is never allowed to fail a run: errors become warnings."""

from __future__ import annotations

import warnings
from pathlib import Path


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}/"))
        else:  # numbers, strings and lists (the validation history, the loss curve) as they are
            out[f"{prefix}{k}"] = v
    return out


class Tracker:
    def __init__(self, config: dict, run_id: str, folder: str):
        self.run = None
        self.info: dict = {"backend": config["tracking"]["backend"]}
        if config["tracking"]["backend"] != "wandb":
            return
        t = config["tracking"]
        try:
            import wandb

            self.run = wandb.init(
                project=t["project"],
                entity=t["entity"],
                mode=t["mode"],
                group=t["group"] or config["sweep_name"],
                job_type=config["method"]["name"],
                name=run_id,
                tags=[config["sweep_name"], config["model"]["name"], config["task"]["name"], config["method"]["name"], *t["tags"]],
                config=config,
                dir=folder,
                settings=wandb.Settings(silent=True, console="off"),
            )
            # run.dir is the run's files/ folder; `wandb sync` takes the run folder above it
            self.info.update(mode=t["mode"], dir=str(Path(self.run.dir).parent), url=self.run.url if t["mode"] == "online" else None)
        except Exception as e:  # noqa: BLE001 - any tracking failure is reported, never raised
            self._fail("init", e)

    def _fail(self, what: str, e: Exception) -> None:
        warnings.warn(f"W&B {what} failed, the run continues without it: {type(e).__name__}: {e}", stacklevel=3)
        self.info["error"] = f"{what}: {type(e).__name__}: {e}"
        self.run = None

    def log(self, metrics: dict, step: int | None = None) -> None:
        if self.run is not None:
            try:
                self.run.log(metrics, step=step)
            except Exception as e:  # noqa: BLE001
                self._fail("log", e)

    def finish(self, record: dict) -> bool:
        """Send the record's numbers as the run summary and close the run; False if that failed."""
        if self.run is None:
            return True
        try:
            self.run.summary.update(flatten({k: v for k, v in record.items() if k != "config"}))
            self.run.finish(exit_code=0 if record["status"] in ("ok", "not_applicable") else 1)
        except Exception as e:  # noqa: BLE001
            self._fail("finish", e)
            return False
        return True
