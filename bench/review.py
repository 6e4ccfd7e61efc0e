"""Verify a data file by hand: a stratified random sample to read (`python -m bench.data sample`), and the error
rate that the reviewed sample shows (`python -m bench.data review`).

The sample is drawn in proportion to each stratum's share of the file (the largest remainders get the rounding,
every stratum at least one row where the size allows), so the share of bad rows in the sample estimates the
file's; its 95% interval is Clopper-Pearson's exact binomial interval (scipy), honest at the small samples a
person reads, and the interval of the file's count of bad rows is the same interval times the file's size.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("line", "stratum", "stratum_size", "prompt", "completion", "verdict", "note")
VERDICTS = ("ok", "bad")


class ReviewError(ValueError):
    """A review file that cannot be read as one."""


def allocate(sizes: dict[str, int], size: int) -> dict[str, int]:
    """Rows per stratum: proportional to its size, the largest remainders rounded up, then at least one per
    stratum while the size allows (taken from the stratum with the most)."""
    size = min(size, sum(sizes.values()))
    exact = {s: size * n / sum(sizes.values()) for s, n in sizes.items()}
    out = {s: int(q) for s, q in exact.items()}
    for s in sorted(sizes, key=lambda s: (out[s] - exact[s], s))[: size - sum(out.values())]:
        out[s] += 1
    for s in sorted(sizes) if size >= len(sizes) else ():
        if out[s] == 0:
            out[max(out, key=out.get)] -= 1
            out[s] = 1
    return out


def sample(records, strata: list[str], size: int, seed: int = 0) -> list[dict]:
    """`size` rows of `records` (each with the stratum at its index), seeded, in line order, ready to review."""
    members = defaultdict(list)
    for r, s in zip(records, strata):
        members[s].append(r)
    counts = allocate({s: len(rs) for s, rs in members.items()}, size)
    rng = random.Random(seed)
    rows = [
        {"line": r.line, "stratum": s, "stratum_size": len(members[s]), "prompt": r.body, "completion": r.completion}
        for s in sorted(members)
        for r in rng.sample(members[s], counts[s])
    ]
    return [{**row, "verdict": "", "note": ""} for row in sorted(rows, key=lambda row: row["line"])]


def write(rows: list[dict], f) -> None:
    writer = csv.DictWriter(f, fieldnames=COLUMNS)  # f opened with newline="", as csv asks
    writer.writeheader()
    writer.writerows(rows)


@dataclass
class Review:
    reviewed: int
    bad: list[dict]  # the rows judged bad: line, stratum, note
    unreviewed: int
    population: int  # the file's records, from the strata's sizes
    low: float
    high: float

    @property
    def rate(self) -> float:
        return len(self.bad) / self.reviewed


def read(path: Path) -> Review:
    """The reviewed sample's error rate with its 95% interval; ReviewError naming the row and the value for a
    verdict other than ok, bad or empty, a missing column, or no reviewed row."""
    from scipy.stats import binomtest

    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("line", "stratum", "stratum_size", "verdict") if c not in (reader.fieldnames or [])]
        if missing:
            raise ReviewError(f"{path}: no column {', '.join(missing)}: expected the header {','.join(COLUMNS)}")
        rows = list(reader)
    sizes, bad, reviewed = {}, [], 0
    for n, row in enumerate(rows, 2):  # row 1 is the header
        verdict = (row["verdict"] or "").strip().lower()
        if verdict not in ("", *VERDICTS):
            raise ReviewError(
                f"{path}: row {n} (line {row['line']}): verdict {row['verdict']!r}: expected ok, bad or empty"
            )
        try:
            sizes[row["stratum"]] = int(row["stratum_size"])
        except ValueError:
            raise ReviewError(
                f"{path}: row {n}: stratum_size {row['stratum_size']!r}: expected the count `sample` wrote"
            ) from None
        reviewed += verdict != ""
        if verdict == "bad":
            bad.append({"line": row["line"], "stratum": row["stratum"], "note": (row.get("note") or "").strip()})
    if not reviewed:
        raise ReviewError(f"{path}: no row has a verdict yet: write ok or bad in the verdict column")
    interval = binomtest(len(bad), reviewed).proportion_ci(confidence_level=0.95, method="exact")
    return Review(reviewed, bad, len(rows) - reviewed, sum(sizes.values()), interval.low, interval.high)
