"""A static HTML report: an index of sweeps and a page per sweep with its tables and figures.
No server and no account; open index.html in a browser."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from analysis.tables import Table

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:75em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}img{max-width:48%;margin:.5em}.failed{color:#b00}"""


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def _html_table(table: Table) -> str:
    frame = table.frame
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [frame.index.name or ""] + list(frame.columns))
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in [label, *row]) + "</tr>"
        for label, row in frame.iterrows()
    )
    return f"<h2>{html.escape(table.title)}</h2><table id='{table.name}'><tr>{head}</tr>{rows}</table>"


def sweep_page(sweep: str, frame: pd.DataFrame, tables: list[Table], figures: list[Path], folder: Path) -> Path:
    counts = frame.status.value_counts().sort_index()
    parts = [f"<p>{len(frame)} runs: " + ", ".join(f"{n} {html.escape(str(s))}" for s, n in counts.items()) + "</p>"]
    for table in tables:
        parts.append(_html_table(table))
        parts.append(
            " ".join(f"<a href='tables/{html.escape(table.name)}.{ext}'>{ext}</a>" for ext in ("md", "tex", "csv"))
        )
    parts += [f"<img src='figures/{html.escape(p.name)}' alt='{html.escape(p.stem)}'>" for p in figures]
    failed = frame[frame.status.isin(["failed", "oom", "diverged", "refused"])]
    if len(failed):
        parts.append(
            "<h2>Runs that did not finish (or, refused as too big, did not start)</h2><ul>"
            + "".join(
                f"<li class='failed'>{html.escape(r.run_id)} ({html.escape(r.status)}): "
                f"{html.escape(str(r.error))}</li>"
                for r in failed.itertuples()
            )
            + "</ul>"
        )
    path = folder / "index.html"
    path.write_text(_page(f"sweep {sweep}", "".join(parts)))
    return path


def index_page(sweeps: dict[str, pd.DataFrame], folder: Path) -> Path:
    items = "".join(
        f"<li><a href='{html.escape(s)}/index.html'>{html.escape(s)}</a>: {len(f)} runs, "
        f"{int((f.status == 'ok').sum())} ok</li>"
        for s, f in sorted(sweeps.items())
    )
    path = folder / "index.html"
    path.write_text(_page("peft-bench results", f"<ul>{items}</ul>"))
    return path
