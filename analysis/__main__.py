"""Regenerate tables, figures and the HTML report from the run records.

python -m analysis [--results results] [--out results/report] [--sweep NAME ...] [--wandb offline|online]

It also rewrites the model card of each kept folder whose setting ran on several seeds with its score over them
(analysis/cards.py); --wandb logs each sweep's tables and figures as a W&B summary run (analysis/wandb_summary.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis import cards, figures, report, serving, tables, wandb_summary
from bench import results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results"), help="folder of <sweep>/<run_id>.json records")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: <results>/report)")
    parser.add_argument("--sweep", nargs="*", help="only these sweeps")
    parser.add_argument(
        "--wandb", choices=("offline", "online"), help="also log each sweep's tables and figures to W&B"
    )
    parser.add_argument("--project", default="peft-bench", help="the W&B project (default: peft-bench)")
    args = parser.parse_args(argv)
    out = args.out or args.results / "report"

    frame = results.load(args.results)
    served = serving.load(args.results)  # mode=serve records, in <sweep>/serve/
    names = sorted(set(frame.sweep) | set(served))
    if not names:
        parser.error(f"no run records under {args.results}/<sweep>/*.json (nor serve records in <sweep>/serve/)")
    unknown = sorted(set(args.sweep or ()) - set(names))
    if unknown:
        parser.error(f"--sweep {' '.join(unknown)}: no such sweep under {args.results}; its sweeps: {', '.join(names)}")
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file: expected a folder to write the report into")
    sweeps = {s: frame[frame.sweep == s].reset_index(drop=True) for s in names if not args.sweep or s in args.sweep}
    try:
        write(sweeps, served, out, args)
    except OSError as e:
        parser.error(f"--out {out}: cannot write the report there ({e.strerror or e})")


def write(sweeps: dict, served: dict, out: Path, args) -> None:
    """Each sweep's tables, figures and page under `out`, its kept folders' cards, its W&B summary run if asked
    for, and the index page."""
    for sweep, runs in sweeps.items():
        folder = out / sweep
        (folder / "tables").mkdir(parents=True, exist_ok=True)
        (folder / "figures").mkdir(parents=True, exist_ok=True)
        found = (tables.tables(runs) if len(runs) else []) + serving.tables(served.get(sweep, []))
        for table in found:
            for ext, text in (("md", table.markdown()), ("tex", table.latex()), ("csv", table.csv())):
                (folder / "tables" / f"{table.name}.{ext}").write_text(text)
        drawn = figures.figures(runs, folder / "figures") if len(runs) else []
        page = report.sweep_page(sweep, runs, found, drawn, folder)
        rewritten = cards.update(args.results, sweep, runs) if len(runs) else 0
        print(
            f"{sweep}: {len(runs)} runs, {len(served.get(sweep, []))} serving measurements -> "
            f"{len(found)} tables, {len(drawn)} figures, {page}; {rewritten} model cards with scores over seeds"
        )
        if args.wandb:
            where = wandb_summary.log(sweep, found, drawn, args.results, args.wandb, args.project)
            print(
                f"{sweep}: W&B summary run {where}"
                + (" (upload: wandb sync " + str(where) + ")" if args.wandb == "offline" else "")
            )
    print(f"report: {report.index_page(sweeps, out)}")


if __name__ == "__main__":
    main()
