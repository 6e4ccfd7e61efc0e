"""A second scorer: EleutherAI's lm-evaluation-harness on a kept decoder adapter, on the examples the run scored.

    python -m bench.tools.lm_eval_check results/SWEEP/RUN_ID.json      # needs pip install -e ".[lmeval]"

From the record, the run's own test split is rebuilt (bench.runner.task_data: the same seeded examples and
prompts) and written as a local lm-eval task beside a YAML definition: a generate task (arithmetic) as
`generate_until` with greedy decoding to the run's `task.max_new_tokens`, scored by lm-eval's `exact_match`
after a regex filter that keeps the last number of the answer (what the harness's answer_exact_match compares
on these tasks); a classification task as `multiple_choice` over its label words, scored by lm-eval's `acc`
(the harness ranks the words by mean log-likelihood per token, lm-eval's `acc` by the sum, so they agree where
the words are one token each, or have the same length). lm-eval then runs as its users run it, `lm_eval --model
hf --model_args pretrained=BASE,peft=ADAPTER --include_path DIR`, one example at a time (batching pads on the
left, which can flip a greedy token against the harness's batches), offline. Both figures are printed with
the examples on which the two disagree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from bench import record
from bench.compose import typed
from bench.families import FAMILIES
from bench.tasks import continuation

LAST_NUMBER = r"-?\d+(?: R \d+)?"  # Goat's answers: an integer, or a quotient with its remainder ("139 R 18")


def task_files(rec, folder: Path) -> tuple[str, list[dict]]:
    """Write the run's test split and its lm-eval task definition into `folder`; the task's name and its docs."""
    from bench.runner import task_data  # deferred: torch and the engine

    cfg = typed(rec.config)
    data = task_data(cfg)
    name = f"peft_bench_{cfg.task.name}"
    if data.kind == "generate":
        docs = [{"prompt": e.prompt or e.text, "answer": _last_number(e.target)} for e in data.test]
        task = {
            "output_type": "generate_until",
            "doc_to_target": "{{answer}}",
            "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": cfg.task.max_new_tokens},
            "filter_list": [
                {
                    "name": "last_number",
                    "filter": [{"function": "regex", "regex_pattern": LAST_NUMBER, "group_select": -1}],
                }
            ],
            "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        }
    else:
        docs = [  # each word as the harness scores it after the prompt (bench.tasks.continuation)
            {"prompt": e.prompt or e.text, "choices": [continuation(e.prompt or e.text, c) for c in data.choices(e)]}
            | {"label": e.label}
            for e in data.test
        ]
        task = {
            "output_type": "multiple_choice",
            "doc_to_target": "{{label}}",
            "doc_to_choice": "{{choices}}",
            "target_delimiter": "",  # the choices carry their own space
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    definition = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(folder / "test.jsonl")}},
        "test_split": "test",
        "doc_to_text": "{{prompt}}",
        **task,
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(definition, sort_keys=False))
    return name, docs


def _last_number(text: str) -> str:
    import re

    found = re.findall(LAST_NUMBER, text)
    return found[-1] if found else text.strip()


def run_lm_eval(rec, folder: Path) -> tuple[float, list[int]]:
    """lm-eval's score of the run's kept adapter on the task in `folder`, and its per-example hits."""
    name, docs = task_files(rec, folder)
    base, adapter = rec.model_source, rec.size.folder
    out = folder / "out"
    command = [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={base},peft={adapter},dtype=float32",
        "--tasks",
        name,
        "--include_path",
        str(folder),
        "--batch_size",
        "1",
        "--device",
        "cpu",
        "--output_path",
        str(out),
        "--log_samples",
    ]
    print("$ " + " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, env={**os.environ, "HF_DATASETS_OFFLINE": "1"})
    [samples] = out.rglob(f"samples_{name}_*.jsonl")
    rows = sorted((json.loads(line) for line in samples.read_text().splitlines()), key=lambda r: r["doc_id"])
    metric = "exact_match" if docs and "answer" in docs[0] else "acc"
    hits = [int(r[metric]) for r in rows]
    return sum(hits) / len(hits), hits


def harness_hits(rec) -> tuple[str, list[int]]:
    """The run's own metric and per-example hits: its generate metric's, or its predicted label against the gold."""
    found = rec.per_example or {}
    if "hits" in found:
        [(metric, hits)] = found["hits"].items()
        return metric, hits
    return "accuracy", [int(p == g) for p, g in zip(found["predicted"], found["gold"])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("record", type=Path, help="a run's record, <results>/<sweep>/<run_id>.json")
    parser.add_argument("--keep", type=Path, help="where to keep the lm-eval task and its output (default: a temp dir)")
    args = parser.parse_args(argv)
    rec = record.read(args.record)
    if rec is None or rec.status != "ok":
        parser.error(f"{args.record}: no finished run's record")
    if not rec.size or not rec.size.folder or not Path(rec.size.folder, "adapter_config.json").is_file():
        parser.error(f"{args.record}: the run kept no peft adapter for lm-eval to load (size.folder)")
    if FAMILIES[rec.config["model"]["family"]].architecture != "decoder":
        parser.error(f"{args.record}: model {rec.config['model']['name']} is no decoder, as lm-eval's hf model is")
    metric, ours = harness_hits(rec)
    with tempfile.TemporaryDirectory() as scratch:
        score, hits = run_lm_eval(rec, args.keep or Path(scratch))
    differ = [i for i, (a, b) in enumerate(zip(ours, hits)) if a != b]
    print(f"harness {metric}: {sum(ours) / len(ours):.4f} on {len(ours)} test examples")
    print(f"lm-eval {'exact_match (last number)' if 'hits' in rec.per_example else 'acc'}: {score:.4f} on {len(hits)}")
    print(
        f"per example: {len(hits) - len(differ)} of {len(hits)} agree"
        + (f"; they differ at {differ}" if differ else "")
    )
    return 1 if differ or len(hits) != len(ours) else 0


if __name__ == "__main__":
    sys.exit(main())
