"""Fault injection, end to end: bad inputs and injected faults against the real commands, with a tally.

    python -m bench.tools.faults [--only inputs|faults] [--cases NAME,...] [--keep DIR]

A bad input passes when `python -m bench` (or `python -m bench.data check`) exits non-zero with a
message naming the key (or file) at fault, before any weights load (transformers reports
"Loading weights" when they do) and without writing a run record. A fault passes when nothing is
lost: each record that should exist does, with the right status, and nothing else is left behind.
Faults run the default model (all-MiniLM-L6-v2, offline) for a few steps on small splits.
Prints one line per case and the tally; exits 1 if any case failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.compose import CONF

REPO = CONF.parent  # the checkout: its commands run from there
SMALL = [
    "tracking=none",
    "train.max_steps=3",
    "train.batch_size=8",
    "task.train_size=64",
    "task.val_size=32",
    "task.test_size=32",
    "train.latency_samples=2",
]
LOADED = "Loading weights"


@dataclass
class Case:
    name: str
    kind: str  # input | fault
    run: Callable[
        [Path], str | None
    ]  # (a fresh folder with the bad files) -> None when it passed, else what went wrong


def bench(
    *args: str, module: str = "bench", timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def records(folder: Path) -> list[dict]:
    """The run records under `folder`: not Hydra's logs, nor the files a run kept in its folder beside its record."""
    return [
        json.loads(p.read_text())
        for p in sorted(folder.rglob("*.json"))
        if "logs" not in p.parts and not p.parent.with_name(p.parent.name + ".json").exists()
    ]


def leftovers(folder: Path) -> list[str]:
    """Temporary files a writer left behind."""
    return [str(p) for p in folder.rglob("*.tmp")]


# ---------------------------------------------------------------- bad inputs


def refused(*args: str, names: str, module: str = "bench") -> Callable[[Path], str | None]:
    def run(folder: Path) -> str | None:
        filled = [a.format(folder=folder) for a in args]
        extra = []
        if module in ("bench", "bench.search") and not any(a.startswith("results_dir=") for a in filled):
            extra.append(f"results_dir={folder}/results")
        if module in ("bench", "bench.search") and not any(a.startswith("tracking") for a in filled):
            extra.append("tracking=none")
        out = bench(*filled, *extra, module=module)
        said = out.stderr + out.stdout
        if out.returncode == 0:
            return "exit status 0"
        if names.format(folder=folder) not in said:
            return f"the message does not name {names!r}: {said.strip()[-300:]}"
        if LOADED in said:
            return "weights were loaded before the error"
        if module in ("bench", "bench.search") and records(folder / "results"):
            return "a record was written"
        return None

    return run


def _bad_files(folder: Path) -> None:
    (folder / "a_file").write_text("not a folder")
    (folder / "empty.jsonl").write_text("")
    (folder / "empty_model").mkdir()
    (folder / "strings.jsonl").write_text('"just a string"\n')
    (folder / "cr_only.jsonl").write_bytes(
        b'{"prompt": "a", "completion": " b"}\r{"prompt": "c", "completion": " d"}\r'
    )
    one_label = [json.dumps({"prompt": f"Review {i}:\n\n###\n\n", "completion": " positive"}) for i in range(40)]
    (folder / "one_label.jsonl").write_text("\n".join(one_label) + "\n")
    os.link(folder / "one_label.jsonl", folder / "hard_link.jsonl")
    sst2 = folder / "sst2"
    sst2.mkdir()
    (sst2 / "train.tsv").write_text("sentence\tlabel\nfine\t1\n")
    (sst2 / "dev.tsv").write_text("label\tcontent\n1\tfine\n")


INPUTS = [
    ("lora rank above the width", ("method.r=5000",), "method.r"),
    (
        "prompt longer than the positions",
        ("method=prompt_tuning", "method.num_virtual_tokens=100000"),
        "method.num_virtual_tokens",
    ),
    ("absurd batch size", ("train.batch_size=1000000",), "train.batch_size"),
    ("absurd step count", ("train.max_steps=1000000000000",), "train.max_steps"),
    ("learning rate 0", ("method.lr=0",), "method.lr"),
    ("negative learning-rate grid", ("method.lr_grid=[-1]",), "method.lr_grid"),
    ("warmup ratio above 1", ("train.warmup_ratio=1.5",), "train.warmup_ratio"),
    ("no step count and no epochs", ("train.max_steps=null",), "train.max_steps"),
    (
        "early stopping without validation",
        ("train.early_stopping_patience=2", "train.eval_every=0"),
        "train.eval_every",
    ),
    ("empty validation split", ("task.val_size=0",), "task.val_size"),
    ("unknown tracking mode", ("tracking.mode=sometimes",), "tracking.mode"),
    ("local source without its package", ("model.source=local", "model.package=no_such_package"), "model.source"),
    ("sweep name ../..", ("sweep_name=../..",), "sweep_name"),
    ("sweep name absolute", ("sweep_name=/tmp/elsewhere",), "sweep_name"),
    ("sweep name ..", ("sweep_name=..",), "sweep_name"),
    ("sweep name empty", ("sweep_name=",), "sweep_name"),
    ("sweep name nested", ("sweep_name=a/b",), "sweep_name"),
    ("results folder is a file", ("results_dir={folder}/a_file",), "results_dir"),
    ("results folder unwritable", ("results_dir=/proc/peft-bench",), "results_dir"),
    (
        "sweep into a results folder that is a file",
        ("-m", "results_dir={folder}/a_file", "method.r=4,8"),
        "results_dir",
    ),
    ("unknown method", ("method=no_such_method",), "method/no_such_method"),
    ("malformed override", ("method.r=", "method.targets=[q,"), "malformed override 'method.targets=[q,'"),
    (
        "SST-2 file with another header",
        ("task=sst2", "task.data_dir={folder}/sst2"),
        "{folder}/sst2/dev.tsv starts with fields label, content",
    ),
    ("empty JSONL file as the task", ("task=jsonl", "task.path={folder}/empty.jsonl"), "task.path"),
    # issue 29's second round
    ("model name that climbs out of the store", ("model.name=../../escaped/x",), "model.name"),
    ("epochs making 8e9 steps", ("train.max_steps=null", "train.epochs=1e9"), "train.epochs"),
    ("infinite epochs", ("train.max_steps=null", "train.epochs=inf"), "train.epochs"),
    ("a billion latency samples", ("train.latency_samples=1000000000",), "train.latency_samples"),
    ("NaN clipping norm", ("train.max_grad_norm=nan",), "train.max_grad_norm"),
    ("NaN weight decay", ("train.weight_decay=nan",), "train.weight_decay"),
    ("infinite learning rate", ("method.lr=inf",), "method.lr"),
    ("negative seed", ("seed=-1",), "seed"),
    ("validation split larger than the data", ("task.val_size=100000",), "task.val_size"),
    ("negative SGD momentum", ("train.optimizer=sgd", "+train.optimizer_args.momentum=-1"), "train.optimizer_args"),
    ("negative peft rank", ("method=peft", "method.type=LORA", "+method.args.r=-3"), "method.args"),
    ("empty folder as the model", ("model.source=hub", "model.hub_id={folder}/empty_model"), "model.hub_id"),
    ("inputs longer than the positions", ("task.max_length=2000",), "task.max_length"),
    ("served lengths longer than the positions", ("mode=serve", "serve.lengths=[1000]"), "serve.lengths"),
    ("rank above the width without the preset's sizes", ("model.config=null", "method.r=5000"), "method.r"),
    ("empty results folder", ("results_dir=",), "results_dir"),
    ("results folder starting with ~", ("results_dir=~/x",), "results_dir"),
    ("Hydra changing the working folder", ("hydra.job.chdir=true",), "hydra.job.chdir"),
    ("W&B project with a slash", ("tracking=wandb", "tracking.project=a/b"), "tracking.project"),
    ("W&B tag of 300 characters", ("tracking=wandb", f"tracking.tags=[{'x' * 300}]"), "tracking.tags"),
    ("JSONL line that is a string", ("task=jsonl", "task.path={folder}/strings.jsonl"), "{folder}/strings.jsonl"),
    ("JSONL completions of one label", ("task=jsonl", "task.path={folder}/one_label.jsonl"), "positive"),
    ("search whose sweep name climbs", ("--methods", "lora", "sweep_name=../x"), "sweep_name"),
]
# the other commands: (name, module, arguments, what the message names)
COMMANDS = [
    ("empty JSONL file in bench.data check", "bench.data", ("check", "{folder}/empty.jsonl"), "{folder}/empty.jsonl"),
    (
        "string line in bench.data check",
        "bench.data",
        ("check", "{folder}/strings.jsonl"),
        "strings.jsonl:1: error: not a JSON object",
    ),
    ("CR-only line endings in bench.data check", "bench.data", ("check", "{folder}/cr_only.jsonl"), "CR alone"),
    (
        "augment onto a hard link of its input",
        "bench.data",
        ("augment", "{folder}/one_label.jsonl", "--out", "{folder}/hard_link.jsonl"),
        "--out",
    ),
    (
        "augment into a missing folder",
        "bench.data",
        ("augment", "{folder}/one_label.jsonl", "--out", "{folder}/no/x"),
        "--out",
    ),
    ("analysis of a sweep that does not exist", "analysis", ("--results", "{folder}", "--sweep", "nope"), "--sweep"),
    ("analysis into a file", "analysis", ("--results", "{folder}", "--out", "{folder}/a_file"), "--out"),
]


# ---------------------------------------------------------------- faults


def _one(folder: Path, status: str = "ok", where: str = "default") -> str | None:
    found = records(folder / "results" / where)
    if [r["status"] for r in found] != [status]:
        return f"records {[r['status'] for r in found]}, expected [{status!r}]"
    return None


def two_launchers(folder: Path) -> str | None:
    args = [sys.executable, "-m", "bench", *SMALL, f"results_dir={folder}/results"]
    both = [
        subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in both]
    if sum("running elsewhere:" in out for out in outputs) != 1:
        return "not exactly one launcher said 'running elsewhere'"
    if sorted(p.returncode for p in both) != [0, 1]:
        return f"exit statuses {[p.returncode for p in both]}, expected one 0 and one 1"
    return _one(folder)


def spoiled(spoil: Callable[[Path], bytes | None]) -> Callable[[Path], str | None]:
    """A finished run's record replaced by `spoil` (bad bytes, a FIFO, a folder, another run's record; it
    returns the bytes it wrote, if any): the next launch moves it aside, keeps it, names both, and runs again."""

    def run(folder: Path) -> str | None:
        first = bench(*SMALL, f"results_dir={folder}/results", "train.max_steps=1")
        [path] = (folder / "results" / "default").glob("*.json")
        content = spoil(path)
        again = bench(*SMALL, f"results_dir={folder}/results", "train.max_steps=1", timeout=300)
        if first.returncode or again.returncode:
            return f"exit statuses {first.returncode}, {again.returncode}: {again.stderr[-300:]}"
        aside = list(path.parent.glob(f"{path.name}.corrupt-*"))
        if len(aside) != 1 or content is not None and aside[0].read_bytes() != content:
            return "the bad file was not kept aside"
        if str(path) not in again.stderr or aside[0].name not in again.stderr:
            return "the warning does not name the file and where it went"
        return _one(folder)

    return run


def _written(content: bytes) -> Callable[[Path], bytes]:
    def spoil(path: Path) -> bytes:
        path.write_bytes(content)
        return content

    return spoil


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _version_99(path: Path) -> bytes:
    content = json.dumps({**json.loads(path.read_text()), "schema_version": 99}).encode()
    path.write_bytes(content)
    return content


def _other_runs_record(path: Path) -> bytes:
    other = path.parent.parent.with_name("other")
    bench(*SMALL, f"results_dir={other}", "train.max_steps=1", "method.r=4")
    [found] = (other / "default").glob("*.json")
    path.write_bytes(content := found.read_bytes())
    return content


def killed_write_leftover(folder: Path) -> str | None:
    """The zero-byte temporary file a write killed mid-way leaves is gone once the run is launched again."""
    args = [*SMALL, f"results_dir={folder}/results", "train.max_steps=1"]
    bench(*args)
    [path] = (folder / "results" / "default").glob("*.json")
    (path.parent / f".{path.stem}.k1lled_0.tmp").write_bytes(b"")
    again = bench(*args, "force=true")
    if again.returncode:
        return f"exit status {again.returncode}: {again.stderr[-300:]}"
    return f"temporary files left: {leftovers(folder)}" if leftovers(folder) else _one(folder)


def unwritable_cache(folder: Path) -> str | None:
    """A cache folder that cannot be made (PEFT_BENCH_CACHE under /proc): the measurement that caches says so,
    and the run's scores stand."""
    out = bench(*SMALL, f"results_dir={folder}/results", env={"PEFT_BENCH_CACHE": "/proc/peft-bench-cache"})
    return f"exit status {out.returncode}: {out.stderr[-300:]}" if out.returncode else _one(folder)


def help_into_closed_pipe(folder: Path) -> str | None:
    out = subprocess.run(
        f"{sys.executable} -m bench --help | head -1", shell=True, cwd=REPO, capture_output=True, text=True, check=False
    )
    return f"said: {out.stderr.strip()[-300:]}" if "Traceback" in out.stderr else None


def diverged(folder: Path) -> str | None:
    out = bench(*SMALL, f"results_dir={folder}/results", "method.lr=1e30", "train.max_grad_norm=0")
    if out.returncode != 1:
        return f"exit status {out.returncode}"
    [path] = (folder / "results" / "default").glob("*.json")
    try:
        json.loads(path.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except ValueError as e:
        return f"not strict JSON: {e}"
    return _one(folder, "diverged")


def killed(sig: signal.Signals) -> Callable[[Path], str | None]:
    """The launcher killed while its run trains: no temporary file left, and the next launch gets a record."""

    def run(folder: Path) -> str | None:
        args = [sys.executable, "-m", "bench", *SMALL, "train.max_steps=40", f"results_dir={folder}/results"]
        parent = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in parent.stdout:  # wait until the child trains
            if "train:" in line or LOADED in line:
                break
        time.sleep(2)
        parent.send_signal(sig)
        parent.wait(timeout=60)
        deadline = time.time() + 300
        while time.time() < deadline:  # an orphaned child may still be finishing; its record is welcome
            again = bench(*SMALL, "train.max_steps=40", f"results_dir={folder}/results")
            if "running elsewhere" not in again.stdout:
                break
            time.sleep(5)
        if leftovers(folder):
            return f"temporary files left: {leftovers(folder)}"
        return (
            _one(folder)
            if again.returncode == 0
            else f"the next launch exited {again.returncode}: {again.stdout[-300:]}"
        )

    return run


def disk_full(folder: Path) -> str | None:
    """Files above 6 KiB cannot be written (RLIMIT_FSIZE: EFBIG where a full disk gives ENOSPC; Hydra's
    small files fit, the run's record does not): the finished run's record is printed in full and
    the command fails."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (6 * 1024, 6 * 1024))

    out = subprocess.run(
        [sys.executable, "-m", "bench", *SMALL, f"results_dir={folder}/results"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        preexec_fn=limit,
    )
    if out.returncode == 0:
        return "exit status 0 though the record was not written"
    if "the record, in full:" not in out.stderr:
        return f"the record was not printed: {out.stderr[-300:]}"
    rec, _ = json.JSONDecoder().raw_decode(out.stderr.split("the record, in full:\n", 1)[1])
    if rec["status"] != "ok" or "accuracy" not in rec["metrics"]:
        return f"the printed record is {rec['status']}"
    return f"temporary files left: {leftovers(folder)}" if leftovers(folder) else None


def sweep_with_a_failed_job(folder: Path) -> str | None:
    out = bench(
        "-m",
        "model=smollm2-135m",
        "method=bitfit",
        "method.lr=0,1e-3",
        f"results_dir={folder}/results",
        "tracking=none",
    )
    statuses = sorted(r["status"] for r in records(folder / "results"))
    if out.returncode != 1:
        return f"exit status {out.returncode}"
    return None if statuses == ["failed", "not_applicable"] else f"records {statuses}"


def fixed_data_file(folder: Path) -> str | None:
    """A run fails on a bad data file; once the file is fixed, the same command runs it (a new id)."""
    data = folder / "mine.jsonl"
    lines = [
        json.dumps(
            {
                "prompt": f"Review {i}: {'good' if i % 2 else 'bad'} food\n\n###\n\n",
                "completion": " positive" if i % 2 else " negative",
            }
        )
        for i in range(60)
    ]
    data.write_text("\n".join(lines[:59] + ['{"prompt": "broken']) + "\n")
    args = [
        *SMALL,
        f"results_dir={folder}/results",
        "task=jsonl",
        f"task.path={data}",
        "task.val_size=8",
        "task.test_size=8",
        "task.train_size=null",
    ]
    first = bench(*args)
    data.write_text("\n".join(lines) + "\n")
    second = bench(*args)
    if first.returncode == 0 or second.returncode != 0 or "skip:" in second.stdout:
        return f"exit statuses {first.returncode}, {second.returncode}: {second.stdout[-300:]}"
    return None if "ok" in [r["status"] for r in records(folder / "results")] else "no ok record"


def hostile_records(folder: Path) -> str | None:
    """Records that do not fit the schema, one with a sweep name that climbs out of the report
    folder and one whose status is a script: each is skipped with a warning naming its file."""
    before = set(folder.rglob("*"))
    good = bench(*SMALL, f"results_dir={folder}/results", "sweep_name=s", "train.max_steps=1")
    if good.returncode:
        return f"the good run failed: {good.stderr[-300:]}"
    [path] = (folder / "results" / "s").glob("*.json")
    rec = json.loads(path.read_text())
    failed = {**rec, "status": "failed", "error": {"type": "E", "message": "m"}}
    config = rec["config"]
    unlike = {  # records that do not fit the schema: each skipped, by name
        "list_for_dict": {**rec, "metrics": ["a", "list"]},
        "string_metric": {**rec, "metrics": {**rec["metrics"], "accuracy": "high"}},
        "script_status": {**rec, "status": "<script>alert(1)</script>"},
        "digits_400": {**rec, "metrics": {**rec["metrics"], "accuracy": int("9" * 400)}},
        "negative_accuracy": {**rec, "metrics": {**rec["metrics"], "accuracy": -7.5}},
        "integer_run_id": {**failed, "run_id": 7},
        "no_run_id": {k: v for k, v in failed.items() if k != "run_id"},
    }
    fit = {  # records that fit it, with names a report must make safe
        "climbing": {**rec, "config": {**config, "sweep_name": "../../x"}},
        "markup_task": {
            **rec,
            "config": {**config, "task": {**config["task"], "name": "<img src=x onerror=alert(1)>"}},
        },
        "slash_task": {**rec, "config": {**config, "task": {**config["task"], "name": "a/b"}}},
        "lora_without_r": {
            **rec,
            "config": {**config, "method": {k: v for k, v in config["method"].items() if k != "r"}},
        },
        "another_method": {**rec, "config": {**config, "method": {"name": "bitfit", "lr": 1e-3, "lr_grid": []}}},
    }
    for name, content in {**unlike, **fit}.items():
        (path.parent / f"{name}.json").write_text(json.dumps(content))
    (path.parent / "infinite.json").write_text(path.read_text().replace('"accuracy": ', '"accuracy": 1e999, "x": ', 1))
    os.mkfifo(path.parent / "fifo.json")
    out = bench("--results", f"{folder}/results", "--out", f"{folder}/report", module="analysis", timeout=300)
    if out.returncode:
        return f"analysis failed: {out.stderr[-300:]}"
    for name in [*unlike, "infinite", "fifo"]:
        if f"{name}.json" not in out.stderr:
            return f"no warning names {name}.json"
    outside = [
        p
        for p in set(folder.rglob("*")) - before
        if p.is_file() and not p.is_relative_to(folder / "report") and not p.is_relative_to(folder / "results")
    ]
    if outside:
        return f"written outside the report folder: {outside}"
    html = "".join(p.read_text() for p in (folder / "report").rglob("*.html"))
    return "unescaped markup in the report" if "<script>alert" in html or "<img src=x" in html else None


FAULTS = [
    ("two launchers of one run at once", two_launchers),
    ("truncated record at the run's path", spoiled(_written(b'{"run_id": "x", "status": "o'))),
    ("empty record at the run's path", spoiled(_written(b""))),
    ("foreign JSON at the run's path", spoiled(_written(b"[1, 2, 3]"))),
    ("FIFO at the run's path", spoiled(_fifo)),
    ("folder at the run's path", spoiled(_folder)),
    ("record of schema version 99 at the run's path", spoiled(_version_99)),
    ("another run's record at the run's path", spoiled(_other_runs_record)),
    ("zero-byte temporary file of a killed write", killed_write_leftover),
    ("unwritable cache folder", unwritable_cache),
    ("--help into a closed pipe", help_into_closed_pipe),
    ("non-finite loss", diverged),
    ("launcher terminated (SIGTERM) mid-run", killed(signal.SIGTERM)),
    ("launcher killed (SIGKILL) mid-run", killed(signal.SIGKILL)),
    ("disk full when the record is written", disk_full),
    ("sweep with a failed job", sweep_with_a_failed_job),
    ("bad data file, then fixed", fixed_data_file),
    ("hostile records in analysis", hostile_records),
]


def cases() -> list[Case]:
    found = [
        Case(
            name, "input", refused(*args, names=names, module="bench.search" if name.startswith("search") else "bench")
        )
        for name, args, names in INPUTS
    ]
    found += [Case(name, "input", refused(*args, names=names, module=module)) for name, module, args, names in COMMANDS]
    return found + [Case(name, "fault", run) for name, run in FAULTS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("inputs", "faults"), help="one kind of case")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--keep", type=Path, help="leave each case's folder under this one")
    args = parser.parse_args(argv)
    chosen = [
        c
        for c in cases()
        if (not args.only or c.kind == args.only[:-1]) and (not args.cases or c.name in args.cases.split(","))
    ]
    if not chosen:
        parser.error(f"--cases: none of {args.cases!r}; the cases: {', '.join(c.name for c in cases())}")
    passed = {"input": 0, "fault": 0}
    for case in chosen:
        folder = Path(tempfile.mkdtemp(prefix="faults-", dir=args.keep))
        _bad_files(folder)
        started = time.time()
        try:
            problem = case.run(folder)
        except Exception as e:  # noqa: BLE001 - a case that crashes is a failed case, the others still run
            problem = f"{type(e).__name__}: {e}"
        passed[case.kind] += problem is None
        print(
            f"{'PASS' if problem is None else 'FAIL'} {case.kind:5} {case.name} ({time.time() - started:.0f} s)"
            + (f": {problem}" if problem else ""),
            flush=True,
        )
    inputs = sum(c.kind == "input" for c in chosen)
    faults = len(chosen) - inputs
    print(
        f"bad inputs answered before loading: {passed['input']} of {inputs}; "
        f"faults survived with nothing lost: {passed['fault']} of {faults}"
    )
    return 0 if sum(passed.values()) == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
