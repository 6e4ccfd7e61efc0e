"""The "what fits" table and figure for the Llama 2 scale presets and GPT-3 175B: every method on a float, nf4
and int8 base, under each optimizer it takes, estimated on the meta device (bench/whatfits.py), against 24, 48
and 80 GiB cards.

    python experiments/memory/what_fits.py [--out experiments/memory] [override ...]

Settings, unless overridden: batch 4 of the default task (tweets, 64 tokens), bf16 weights
(train.precision=bf16), gradient checkpointing, AdamW. Writes what_fits.md (the table) and what_fits.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench import fit, whatfits  # noqa: E402
from bench.compose import compose  # noqa: E402

MODELS = ("llama2-7b", "llama2-13b", "llama2-70b", "gpt3-175b")
SIZES = (7, 13, 70, 175)  # billions of parameters
CARDS = (24, 48, 80)
SETTINGS = [
    "mode=fit",
    "tracking=none",
    "train.batch_size=4",
    "train.precision=bf16",
    "train.gradient_checkpointing=true",
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    rows = {m: whatfits.table(compose([*SETTINGS, f"model={m}", *args.overrides])) for m in MODELS}
    key = ("method", "quantize", "optimizer")
    combos = [tuple(r[k] for k in key) for r in rows[MODELS[0]]]
    lines = [
        f"| method | base | optimizer | {' | '.join(f'{m} (GiB)' for m in MODELS)} |",
        f"|---|---|---|{'---|' * len(MODELS)}",
    ]
    for combo in combos:
        cells = []
        for m in MODELS:
            r = next(r for r in rows[m] if tuple(r[k] for k in key) == combo)
            fits = "".join("●" if r["bytes"] <= card * fit.GIB else "○" for card in CARDS)
            cells.append(f"{r['bytes'] / fit.GIB:,.1f} {fits}")
        lines.append(f"| {' | '.join(combo)} | {' | '.join(cells)} |")
    note = f"● fits / ○ does not fit, for {', '.join(f'{c}' for c in CARDS)} GiB; settings: {' '.join(SETTINGS[2:])}"
    (args.out / "what_fits.md").write_text("\n".join(lines) + f"\n\n{note}\n")
    print("\n".join(lines) + f"\n\n{note}")

    fig, ax = plt.subplots(figsize=(10, 5.5))
    for combo in combos:
        method, q, optimizer = combo
        # 8-bit AdamW changes little where few weights train: its lines are drawn for full fine-tuning only
        if method in ("icl", "probe") or optimizer == "adamw8bit" and method != "full_ft":
            continue
        peaks = [next(r for r in rows[m] if tuple(r[k] for k in key) == combo)["bytes"] / fit.GIB for m in MODELS]
        label = f"{method} ({q}" + (f", {optimizer})" if optimizer not in ("adamw", "lomo") else ")")
        ax.plot(SIZES, peaks, marker="o", linestyle="-" if q == "none" else "--", label=label)
    for card in CARDS:
        ax.axhline(card, color="grey", linewidth=0.8)
        ax.text(7, card * 1.05, f"{card} GiB", color="grey", fontsize=8)
    ax.set(xscale="log", yscale="log", xlabel="parameters (billions: Llama 2, GPT-3)", ylabel="estimated peak (GiB)")
    ax.set_xticks(SIZES, [str(s) for s in SIZES])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(args.out / "what_fits.png", dpi=120)


if __name__ == "__main__":
    sys.exit(main())
