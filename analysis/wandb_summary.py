"""A sweep's tables and figures in W&B: one summary run per sweep (job type "analysis", in the sweep's group, as
its runs are) with each table as a W&B Table and each figure as an image. Offline by default, as every run: the
run folder is written beside the sweep's runs (<results>/<sweep>/wandb/), and `wandb sync` uploads it later."""

from __future__ import annotations

from pathlib import Path

from analysis.tables import Table


def log(sweep: str, found: list[Table], drawn: list[Path], results: Path, mode: str, project: str) -> Path:
    """The summary run's folder."""
    import wandb

    run = wandb.init(
        project=project,
        mode=mode,
        group=sweep,
        job_type="analysis",
        name=f"{sweep}-analysis",
        dir=str(results / sweep),
        settings=wandb.Settings(silent=True, console="off"),
    )
    try:
        for table in found:  # display strings, the row label as the first column, as the markdown tables show
            frame = table.frame.reset_index().astype(str)
            run.log({f"tables/{table.name}": wandb.Table(dataframe=frame)})
        for figure in drawn:
            run.log({f"figures/{figure.stem}": wandb.Image(str(figure))})
    finally:
        run.finish()
    return Path(run.dir).parent
