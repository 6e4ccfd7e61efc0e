"""Soft prompts read back as words (Lester et al. 2021, section 7), from a sweep's kept prompt-tuning adapters.

    python -m analysis.prompts [--results results] --sweep NAME [--top 5]

Each virtual token's nearest vocabulary tokens by cosine similarity to the model's input embeddings, written
beside the adapter (neighbours.json in its kept folder) and printed: per run, its initialisation (method.init)
and the share of virtual tokens whose top-k neighbours hold a class label's word (a label's first token, at the
start of a text or after a space), then the table of those shares by initialisation over the sweep's runs.
Only prompt tuning has input-layer virtual tokens: peft's prefix tuning prefixes every layer's keys and values.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch

from analysis.delta_w import base_source
from analysis.tables import Table
from bench import results


def label_tokens(tokenizer, labels: list[str]) -> dict[int, str]:
    """The first token id of each label word, as it starts a text and as it follows a space (byte-level BPE
    tokenizers tell the two apart)."""
    ids = {}
    for label in labels:
        for text in (label, " " + label):
            tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
            if tokens:
                ids[tokens[0]] = label
    return ids


def neighbours(prompt: torch.Tensor, embeddings: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cosine similarities, token ids) of each virtual token's `top` nearest vocabulary embeddings."""
    prompt = torch.nn.functional.normalize(prompt.double(), dim=-1)
    embeddings = torch.nn.functional.normalize(embeddings.double(), dim=-1)
    return (prompt @ embeddings.T).topk(top, dim=-1)


def read_back(record: dict, folder: Path, top: int) -> dict:
    """The kept prompt's nearest tokens and label share; written to the folder as neighbours.json."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    source = base_source(record)
    prompt = load_file(folder / "adapter_model.safetensors")["prompt_embeddings"]
    embeddings = AutoModel.from_pretrained(source, dtype=torch.float32).get_input_embeddings().weight.detach()
    tokenizer = AutoTokenizer.from_pretrained(source)
    labels = list((record["data"].get("test") or {}).get("labels") or {})
    wanted = label_tokens(tokenizer, labels)
    similarity, ids = neighbours(prompt, embeddings[: len(tokenizer)], top)
    tokens = [
        [{"token": tokenizer.convert_ids_to_tokens(int(i)), "cosine": round(float(c), 4)} for c, i in zip(cs, row)]
        for cs, row in zip(similarity, ids)
    ]
    with_label = [bool(set(map(int, row)) & set(wanted)) for row in ids]
    found = {
        "run_id": record["run_id"],
        "init": record["config"]["method"].get("init"),
        "init_text": record["config"]["method"].get("init_text"),
        "labels": labels,
        "label_tokens": [tokenizer.convert_ids_to_tokens(i) for i in wanted],
        "top": top,
        "share_with_label": sum(with_label) / len(with_label),
        "neighbours": tokens,
    }
    (folder / "neighbours.json").write_text(json.dumps(found, indent=1, ensure_ascii=False) + "\n")
    return found


def table(found: list[dict], score: dict[str, float]) -> Table:
    by_init = {}
    for f in found:
        init = f["init"] + (f" ({f['init_text']})" if f["init"] == "text" else "")
        by_init.setdefault(init, []).append(f)
    rows = {}
    for init, runs in by_init.items():
        scores = [score.get(f["run_id"]) for f in runs]
        rows[init] = {
            "runs": len(runs),
            f"virtual tokens near a label word (top {runs[0]['top']}) %": (
                f"{100 * sum(f['share_with_label'] for f in runs) / len(runs):.1f}"
            ),
            "test score %": "-" if None in scores else f"{100 * sum(scores) / len(scores):.1f}",
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "init"
    return Table("prompt_words", "soft prompts read back as words, by initialisation (means over runs)", frame)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results"), help="folder of <sweep>/<run_id>.json records")
    parser.add_argument("--sweep", required=True, help="the sweep whose kept prompt-tuning adapters to read")
    parser.add_argument("--top", type=int, default=5, help="nearest vocabulary tokens per virtual token (default 5)")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error(f"--top {args.top}: expected 1 or more")
    runs = results.load(args.results)
    runs = runs[(runs.sweep == args.sweep) & (runs.method == "prompt_tuning") & (runs.status == "ok")]
    found = [
        read_back(k["record"], k["folder"], args.top)
        for k in results.kept_folders(runs, args.results)
        if (k["folder"] / "adapter_model.safetensors").is_file()
    ]
    if not found:
        parser.error(f"--sweep {args.sweep}: no finished prompt-tuning run with a kept adapter under {args.results}")
    for f in found:
        print(f"{f['run_id']} (init {f['init']}): {100 * f['share_with_label']:.0f}% of virtual tokens near a label")
        for n, row in enumerate(f["neighbours"][:5]):
            print(f"  token {n}: " + ", ".join(f"{t['token']} ({t['cosine']:.2f})" for t in row))
    shown = table(found, dict(zip(runs.run_id, runs.score)))
    print()
    shown.shown(args.results, args.sweep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
