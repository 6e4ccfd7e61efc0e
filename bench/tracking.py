"""Weights & Biases mirror of each run. Offline mode by default writes a real run folder that
`wandb sync` uploads later. Tracking is never allowed to fail a run: errors become warnings."""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.record import Record


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}/"))
        else:  # numbers, strings and lists (the validation history, the loss curve) as they are
            out[f"{prefix}{k}"] = v
    return out


class Tracker:
    """W&B's import and start take seconds, so they run in a thread beside the run's data and model
    loading; everything that uses the run waits for that thread first."""

    def __init__(self, config: dict, run_id: str, folder: str):
        self.run = None
        self._info: dict = {"backend": config["tracking"]["backend"]}
        self._starting, self._failed = None, None
        if config["tracking"]["backend"] == "wandb":
            self._starting = threading.Thread(target=self._start, args=(config, run_id, folder), daemon=True)
            self._starting.start()

    def _start(self, config: dict, run_id: str, folder: str) -> None:
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
                tags=[
                    config["sweep_name"],
                    config["model"]["name"],
                    config["task"]["name"],
                    config["method"]["name"],
                    *t["tags"],
                ],
                config=config,
                dir=folder,
                settings=wandb.Settings(silent=True, console="off"),
            )
            # run.dir is the run's files/ folder; `wandb sync` takes the run folder above it
            self._info.update(
                mode=t["mode"], dir=str(Path(self.run.dir).parent), url=self.run.url if t["mode"] == "online" else None
            )
        except Exception as e:  # noqa: BLE001 - any tracking failure is reported, never raised
            self._failed = e  # warned of in the run's own thread, where a user (and pytest) sees it

    def ready(self) -> None:
        """Wait until W&B has started (or failed to)."""
        if self._starting is not None:
            self._starting.join()
            self._starting = None
            if self._failed is not None:
                self._fail("init", self._failed)

    @property
    def info(self) -> dict:
        """What the record says about tracking: backend, mode, the run folder, any error."""
        self.ready()
        return self._info

    def _fail(self, what: str, e: Exception) -> None:
        warnings.warn(f"W&B {what} failed, the run continues without it: {type(e).__name__}: {e}", stacklevel=3)
        self._info["error"] = f"{what}: {type(e).__name__}: {e}"
        self.run = None

    def log(self, metrics: dict, step: int | None = None) -> None:
        self.ready()
        if self.run is not None:
            try:
                self.run.log(metrics, step=step)
            except Exception as e:  # noqa: BLE001
                self._fail("log", e)

    def finish(self, record: Record) -> bool:
        """Send the record's numbers as the run summary and close the run; False if that failed."""
        self.ready()
        if self.run is None:
            return True
        try:
            self.run.summary.update(flatten({k: v for k, v in record.dump().items() if k != "config"}))
            self._log_kept(record)
            self.run.finish(exit_code=0 if record.status in ("ok", "not_applicable") else 1)
        except Exception as e:  # noqa: BLE001
            self._fail("finish", e)
            return False
        return True

    def _log_kept(self, record: Record) -> None:
        """The kept folder (adapter, model card) as a model artifact named by the run id, with the record
        (less its per-example results) as metadata: what W&B's model registry and lineage read."""
        folder = record.size.folder if record.size else None
        if record.status != "ok" or not folder or not Path(folder).is_dir():
            return
        import wandb

        meta = {k: v for k, v in record.dump().items() if k not in ("per_example", "predictions")}
        artifact = wandb.Artifact(record.run_id, type="model", metadata=meta)
        # W&B copies the files it will upload into a staging folder, by default in the user's home: the run's
        # own W&B folder instead (unless the user set one), so that an offline sweep's folder holds all `wandb
        # sync` sends. A copy, not a reference: the model card in the kept folder is rewritten by analysis.
        staging = os.environ.get("WANDB_DATA_DIR")
        os.environ["WANDB_DATA_DIR"] = staging or str(Path(self._info["dir"]).parent)
        try:
            artifact.add_dir(folder)
            self.run.log_artifact(artifact)
        finally:
            if staging is None:
                del os.environ["WANDB_DATA_DIR"]
