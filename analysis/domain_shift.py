"""In-domain against out-of-domain accuracy per method (Lester et al. 2021, Table 2), from `python -m bench.evaluate`.

    python -m analysis.domain_shift [--results results] --sweep NAME

Per setting (method, and a prompt's initialisation) and task scored on: test accuracy on the task the runs
were trained on and on the other task, each the mean ± std over seeds with its 95% bootstrap interval over
test examples; the drop between them; and the out-of-domain accuracy's paired difference from the best setting
on the same examples (n.s. where its interval holds zero). Lester et al.'s claim: prompt tuning loses less out
of domain than model tuning.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import uncertainty
from analysis.tables import Table
from bench.evaluate import FOLDER

METRIC = "accuracy"


def setting(config: dict) -> str:
    """The method, with how a soft prompt started where it did not start at random."""
    m = config["method"]
    init = m.get("init") if m["name"] == "prompt_tuning" else "random"
    return m["name"] + (f" (init {init})" if init != "random" else "")


def evaluated(results: Path, sweep: str) -> list[dict]:
    """The sweep's out-of-domain results, each with the record of the run it scored."""
    found = []
    for path in sorted((results / sweep / FOLDER).glob("*.json")):
        e = json.loads(path.read_text())
        e["source"] = json.loads(Path(e["record"]).read_text())
        found.append(e)
    return found


def _cells(results: list[dict], names: list[str]) -> str:
    values = np.array([uncertainty.point(METRIC, [r]) for r in results])
    low, high = uncertainty.interval(METRIC, results, names)
    spread = f" ± {100 * values.std(ddof=1):.1f}" if len(values) > 1 else ""
    return f"{100 * values.mean():.1f}{spread} [{100 * low:.1f}, {100 * high:.1f}]"


def table(found: list[dict]) -> Table:
    groups: dict[tuple, list[dict]] = {}
    for e in found:
        key = (setting(e["source"]["config"]), e["trained_on"], e["evaluated_on"])
        groups.setdefault(key, []).append(e)
    best = {}  # per (trained on, scored on): the setting of the highest mean out-of-domain accuracy
    for (name, trained, scored), runs in groups.items():
        mean = np.mean([r["metrics"][METRIC] for r in runs])
        if (trained, scored) not in best or mean > best[(trained, scored)][1]:
            best[(trained, scored)] = (name, mean)
    rows = {}
    for (name, trained, scored), runs in groups.items():
        names = [r["run_id"] for r in runs]
        inside, outside = [r["source"]["per_example"] for r in runs], [r["per_example"] for r in runs]
        drop = np.mean([r["in_domain"][METRIC] - r["metrics"][METRIC] for r in runs])
        leader = best[(trained, scored)][0]
        if leader == name:
            versus = "best"
        else:
            other = groups[(leader, trained, scored)]
            difference, low, high = uncertainty.paired_difference(
                METRIC, outside, [r["per_example"] for r in other], names, [r["run_id"] for r in other]
            )
            mark = "" if uncertainty.significant(low, high) else " n.s."
            versus = f"{100 * difference:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]{mark}"
        rows[f"{name}: {trained} → {scored}"] = {
            "seeds": len(runs),
            f"in-domain {METRIC} % [95% CI]": _cells(inside, names),
            f"out-of-domain {METRIC} % [95% CI]": _cells(outside, names),
            "drop (points)": f"{100 * drop:.1f}",
            "out-of-domain vs best": versus,
            "scored on (left out)": f"{runs[0]['metrics']['size']} ({runs[0]['left_out']})",
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "setting: trained on → scored on"
    return Table("domain_shift", "in-domain against out-of-domain test accuracy, without training on the second", frame)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results"), help="folder of <sweep>/<run_id>.json records")
    parser.add_argument("--sweep", required=True, help="the sweep scored by python -m bench.evaluate")
    args = parser.parse_args(argv)
    found = evaluated(args.results, args.sweep)
    if not found:
        parser.error(f"--sweep {args.sweep}: nothing under {args.results / args.sweep / FOLDER}; run bench.evaluate")
    table(found).shown(args.results, args.sweep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
