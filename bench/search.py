"""The learning-rate search, then seeds: a methods comparison that can rank methods.

    python -m bench.search [--methods full_ft,lora,...] [--seeds 3] [override ...]
    python -m bench.search --recipes lora,qlora,galore,... [--seeds 3] [override ...]

`--recipes` searches conf/recipe settings (a method with its variant, base and optimizer: `+recipe=qlora`)
instead of plain methods, each over its own grid.

1. Each method's grid (`method.lr_grid`, in conf/method/<name>.yaml) runs on seed 0: one Hydra
   multirun per method (`python -m bench -m method=NAME method.lr=a,b,c,d seed=0 ...`), so every
   launcher and every override of `python -m bench` applies.
2. The learning rate with the best mean validation score is selected (bench/selection.py);
   test scores are never read. A choice at the edge of the rates tried widens the grid: one rate
   beyond it at the grid's own spacing there runs on seed 0, and the selection is made again, until
   the choice is interior or `--extend` steps (default 2) were taken; one still at the edge is reported.
3. The selected rate runs on seeds 0..N-1 (seed 0 stands from step 1 and is skipped).

Methods that do not train (probe, icl) run once per seed. Records go to
<results_dir>/<sweep_name>/ (sweep_name defaults to lr_search); everything resumes: rerun the
same command and finished runs are skipped. `python -m analysis --sweep lr_search` then shows
each method at its selected rate with intervals and significance.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from hydra.errors import HydraException

from bench import results
from bench.compose import CONF, compose, to_container
from bench.errors import ConfigError
from bench.methods import METHODS as REGISTRY
from bench.record import search_id
from bench.selection import select
from bench.validate import validate

# the comparison DESIGN.md asks of a methods table: every trained method and both baselines
METHODS = "full_ft,bitfit,prompt_tuning,prefix_tuning,lora,ia3,probe,icl"


def _compose(overrides: list[str]) -> dict:
    """The run config of the search's overrides, validated: a bad override stops the search before its first
    step (not after every grid has failed on it). An empty grid is refused first, before validation makes
    the results folder."""
    cfg = compose(overrides)
    if REGISTRY[cfg.method.name].trains and not cfg.method.lr_grid:
        raise ConfigError(
            "method.lr_grid",
            [],
            f"a non-empty grid of learning rates for {cfg.method.name} (set it "
            f"in conf/method/{cfg.method.name}.yaml or as an override)",
        )
    validate(cfg)
    return to_container(cfg)


def _multirun(choice: str, overrides: list[str], lrs: list[float] | None, seeds: list[int]) -> int:
    command = [
        sys.executable,
        "-m",
        "bench",
        "-m",
        choice,
        *([f"method.lr={','.join(map(repr, lrs))}"] if lrs else []),
        f"seed={','.join(map(str, seeds))}",
        *overrides,
    ]
    print("$ " + " ".join(command[1:]), flush=True)
    return subprocess.call(command)


def search_runs(config: dict):
    """The records of this config's search: the runs that differ from it in seed and lr alone."""
    frame = results.load(Path(config["results_dir"]))
    return frame[(frame.sweep == config["sweep_name"]) & (frame.search == search_id(config))]


def selected_lr(runs) -> tuple[float, dict] | None:
    """The selected learning rate among the finished runs (None if none finished), with what it was chosen by."""
    chosen = select(runs)
    if chosen.empty:
        return None
    chosen = chosen.iloc[0]
    return float(chosen.lr), {
        "grid": list(chosen.lr_grid),
        "edge": bool(chosen.lr_edge),
        "validation": chosen.selection_score,
        "metric": chosen.metric,
    }


def tpe(grid: list[float], trials: int) -> list[str]:
    """Overrides for Hydra's Optuna sweeper: `trials` TPE trials over the grid's range on a log scale, maximizing
    the validation score each run returns (bench/__main__.py), seeded, so that the same command asks for the
    same rates and resumes as a grid does. A failed or diverged trial is recorded as such and the study goes on;
    the sweeper hands Optuna whole runs, so it prunes none. The first half of the trials sample at random and TPE
    models the rest: Optuna's default of 10 random start-up trials would make a budget of 4 to 8 a random search."""
    low, high = min(grid), max(grid)
    return [
        "hydra/sweeper=optuna",
        f"hydra.sweeper.n_trials={trials}",
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.direction=maximize",
        "hydra.sweeper.sampler.seed=0",
        f"hydra.sweeper.sampler.n_startup_trials={(trials + 1) // 2}",
        "hydra.sweeper.max_failure_rate=1.0",
        f"method.lr=tag(log,interval({low},{high}))",
    ]


def beyond(grid: list[float], edge: float) -> float:
    """The next rate past `edge`, the lowest or highest of the rates tried (ascending), at their spacing there (to
    three significant digits: a rate as a person would write it, and the same rate's run id on every machine)."""
    step = edge * grid[-1] / grid[-2] if edge == grid[-1] else edge * grid[0] / grid[1]
    return float(f"{step:.3g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=METHODS, help=f"comma-separated (default: {METHODS})")
    parser.add_argument("--recipes", help="comma-separated conf/recipe names, searched instead of --methods")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of each selected setting (default: 3)")
    parser.add_argument(
        "--extend", type=int, default=2, help="rates tried past a grid's edge while the choice sits there (default: 2)"
    )
    parser.add_argument(
        "--sampler",
        choices=("grid", "tpe"),
        default="grid",
        help="grid: each method's lr_grid; tpe: Hydra's Optuna sweeper over the grid's range on a log scale",
    )
    parser.add_argument("--trials", type=int, help="tpe: trials per method (default: its grid's length)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, as for python -m bench")
    args = parser.parse_args(argv)
    if any(o.lstrip("+~").split("=")[0] in ("seed", "method", "method.lr") for o in args.overrides):
        parser.error("seed, method and method.lr are set by the search: use --seeds and --methods")
    if args.seeds < 1:
        parser.error(f"--seeds={args.seeds}: expected 1 or more")
    if args.extend < 0:
        parser.error(f"--extend={args.extend}: expected 0 or more")
    if args.trials is not None and (args.sampler != "tpe" or args.trials < 1):
        parser.error(f"--trials={args.trials}: expected 1 or more, with --sampler tpe")
    overrides = ["sweep_name=lr_search", *args.overrides]
    if args.recipes:
        recipes = sorted(p.stem for p in (CONF / "recipe").glob("*.yaml"))
        choices = {r: f"+recipe={r}" for r in args.recipes.split(",")}
        unknown = [r for r in choices if r not in recipes]
        if unknown:
            parser.error(f"--recipes: unknown {', '.join(unknown)}; expected names from: {', '.join(recipes)}")
    else:
        choices = {m: f"method={m}" for m in args.methods.split(",")}
        unknown = [m for m in choices if m not in REGISTRY]
        if unknown:
            parser.error(f"--methods: unknown {', '.join(unknown)}; expected names from: {', '.join(sorted(REGISTRY))}")
    try:
        configs = {m: _compose([*overrides, choice]) for m, choice in choices.items()}
    except (ConfigError, HydraException) as e:
        parser.error(str(e).splitlines()[0])
    trains = {m: REGISTRY[config["method"]["name"]].trains for m, config in configs.items()}

    failures = 0
    print("== 1. learning-rate grids, seed 0", flush=True)
    for m, config in configs.items():
        grid = config["method"]["lr_grid"] if trains[m] else None
        if grid and args.sampler == "tpe":
            failures += _multirun(choices[m], [*overrides, *tpe(grid, args.trials or len(grid))], None, [0]) != 0
        else:
            failures += _multirun(choices[m], overrides, grid, [0]) != 0
    print("== 2. selection on validation", flush=True)
    chosen = {}
    for m, config in configs.items():
        runs = search_runs(config)
        if len(runs) and (runs.status == "not_applicable").all():
            print(f"{m}: not applicable here ({runs.error.iloc[0]})")
            continue
        found = selected_lr(runs)
        if found is None:
            print(f"{m}: no finished run to select from; its seeds are skipped")
            failures += 1
            continue
        for _ in range(args.extend if trains[m] and args.sampler == "grid" else 0):
            lr, why = found
            if not why["edge"]:
                break
            step = beyond(why["grid"], lr)
            print(f"{m}: lr {lr:g} is at the edge of {', '.join(f'{g:g}' for g in why['grid'])}: trying {step:g}")
            failures += _multirun(choices[m], overrides, [step], [0]) != 0
            found = selected_lr(search_runs(config))
        chosen[m], why = found
        if trains[m]:
            print(
                f"{m}: lr {chosen[m]:g} of {', '.join(f'{lr:g}' for lr in why['grid'])} "
                f"(mean validation {why['metric']} {why['validation']:.4f})"
                + (f"; STILL AT THE EDGE after --extend={args.extend}: widen method.lr_grid" if why["edge"] else "")
            )
    print(f"== 3. the selected settings on seeds 0..{args.seeds - 1}", flush=True)
    for m, lr in chosen.items():
        failures += _multirun(choices[m], overrides, [lr] if trains[m] else None, list(range(args.seeds))) != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
