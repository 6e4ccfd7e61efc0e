"""Is the weight update rank-deficient? (Hu et al. 2021, LoRA, section 7), from a sweep's kept folders.

    python -m analysis.delta_w [--results results] --sweep NAME [--out DIR]

LoRA (kept adapters): ΔW = s·B·A of each adapted matrix (s = α/r, or α/√r under rsLoRA) and its singular values;
the subspace similarity φ(i, j) = ‖V_iᵀ V'_j‖²_F / min(i, j) between the top-i right singular directions of one
adapter's ΔW and the top-j of another's: a rank-8 and a rank-64 adapter otherwise alike (the paper's Figure 3), and
two seeds at one rank (Figure 4). φ is 1 where one subspace holds the other, about max(i, j)/d for random ones.
Full fine-tuning (kept whole, `keep_full_copies=true`): ΔW = W_tuned - W_0 of the same matrices, and the share of
its energy (squared singular values) in its top r directions, beside a Gaussian matrix of the same shape.
For both, section 7.3's amplification: ‖ΔW‖_F against ‖Uᵀ W_0 V‖_F, W_0 projected on ΔW's top-r singular
directions (U, V), on W_0's own, and on random ones; the factor is ‖ΔW‖_F / ‖Uᵀ W_0 V‖_F on ΔW's.
Every figure is a mean over the model's layers, per matrix (q, v, ...).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch

from analysis.tables import Table
from bench import results
from bench.families import FAMILIES
from bench.record import id_without

RANKS = (1, 2, 4, 8, 16, 32, 64)


def load_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        tensors.update(load_file(f))
    return tensors


def base_source(record: dict) -> str:
    """Where the run's pre-trained weights are on this machine (the record's model_source is the path where they
    were on the machine that ran it, which may be gone)."""
    from omegaconf import OmegaConf

    from bench.assets import source

    return source(OmegaConf.create(record["config"]["model"]))


def base_weights(source: str) -> dict[str, torch.Tensor]:
    """The pre-trained weights W_0 (a folder or a hub id in the cache), by the bare model's names."""
    from transformers import AutoModel

    return {k: v.detach() for k, v in AutoModel.from_pretrained(source, dtype=torch.float32).state_dict().items()}


def _base_key(name: str, base: dict) -> str | None:
    """The key of `name` among the base model's, which may lack the task model's prefix (bert., model.)."""
    parts = name.split(".")
    return next((k for k in (".".join(parts[i:]) for i in range(len(parts))) if k in base), None)


def _matrix(module: str, family) -> str | None:
    import re

    return next((m for m, pattern in family.matrices.items() if re.search(pattern, module)), None)


def lora_updates(folder: Path) -> dict[str, torch.Tensor]:
    """Each adapted module's ΔW = s·B·A, in float64, by module name (without peft's prefix)."""
    config = json.loads((Path(folder) / "adapter_config.json").read_text())
    r, alpha = config["r"], config["lora_alpha"]
    scale = alpha / r**0.5 if config.get("use_rslora") else alpha / r
    tensors = load_tensors(folder)
    out = {}
    for key, a in tensors.items():
        if key.endswith(".lora_A.weight"):
            module = key.removesuffix(".lora_A.weight").removeprefix("base_model.model.")
            b = tensors[key.replace(".lora_A.", ".lora_B.")]
            out[module] = scale * b.double() @ a.double()
    return out


def full_updates(folder: Path, base: dict, family) -> dict[str, torch.Tensor]:
    """W_tuned - W_0 of every attention and feed-forward matrix of a kept whole model, in float64."""
    out = {}
    for key, tuned in load_tensors(folder).items():
        module = key.removesuffix(".weight")
        found = _base_key(key, base)
        if key.endswith(".weight") and tuned.ndim == 2 and found and _matrix(module, family):
            out[module] = tuned.double() - base[found].double()
    return out


def subspace_similarity(delta: torch.Tensor, other: torch.Tensor, i_max: int, j_max: int) -> torch.Tensor:
    """φ(i, j) for i = 1..i_max and j = 1..j_max: the right singular directions of `delta` against `other`'s."""
    v = torch.linalg.svd(delta, full_matrices=False).Vh[:i_max].T
    w = torch.linalg.svd(other, full_matrices=False).Vh[:j_max].T
    overlap = (v.T @ w) ** 2  # [i, j]: squared cosines between direction i and direction j
    cumulative = overlap.cumsum(0).cumsum(1)
    i = torch.arange(1, i_max + 1, dtype=overlap.dtype)[:, None]
    j = torch.arange(1, j_max + 1, dtype=overlap.dtype)[None, :]
    return cumulative / torch.minimum(i, j)


def energy_share(delta: torch.Tensor, ranks=RANKS) -> dict[int, float]:
    """The share of ‖ΔW‖²_F in its top r singular directions."""
    s2 = torch.linalg.svdvals(delta) ** 2
    total = s2.sum()
    return {r: float(s2[:r].sum() / total) for r in ranks if r <= len(s2)}


def amplification(delta: torch.Tensor, w0: torch.Tensor, r: int, seed: int = 0) -> dict[str, float]:
    """Section 7.3: ‖ΔW‖_F and ‖Uᵀ W_0 V‖_F on ΔW's top-r singular directions, W_0's own, and random ones."""
    u, _, vh = torch.linalg.svd(delta, full_matrices=False)
    u0, _, vh0 = torch.linalg.svd(w0, full_matrices=False)
    generator = torch.Generator().manual_seed(seed)
    ur = torch.linalg.qr(torch.randn(w0.shape[0], r, generator=generator, dtype=w0.dtype)).Q
    vr = torch.linalg.qr(torch.randn(w0.shape[1], r, generator=generator, dtype=w0.dtype)).Q

    def projected(left, right):
        return float(torch.linalg.matrix_norm(left.T @ w0 @ right))

    on_delta = projected(u[:, :r], vh[:r].T)
    return {
        "dW": float(torch.linalg.matrix_norm(delta)),
        "W0 on dW's": on_delta,
        "W0 on its own": projected(u0[:, :r], vh0[:r].T),
        "W0 on random": projected(ur, vr),
        "factor": float(torch.linalg.matrix_norm(delta)) / on_delta,
    }


def _plain_lora(config: dict) -> bool:
    m = config["method"]
    return m["name"] == "lora" and not m.get("use_dora") and not m.get("adalora")


def _mean_phi(a: dict, b: dict, i_max: int, j_max: int, family) -> dict[str, torch.Tensor]:
    by_matrix: dict[str, list] = {}
    for module, delta in a.items():
        if module in b:
            phi = subspace_similarity(delta, b[module], i_max, j_max)
            by_matrix.setdefault(_matrix(module, family) or module, []).append(phi)
    return {m: torch.stack(p).mean(0) for m, p in by_matrix.items()}


def analyse(kept: list[dict]) -> dict:
    """Tables (DataFrames) and φ grids of the kept runs."""
    singular, similarity, energy, amplified, shapes = [], {}, [], [], {}
    bases: dict[str, dict] = {}
    updates = {}
    for k in kept:
        rec, folder = k["record"], k["folder"]
        family = FAMILIES[rec["config"]["model"]["family"]]
        source = base_source(rec)
        if source not in bases:
            bases[source] = base_weights(source)
        base = bases[source]
        if _plain_lora(rec["config"]):
            deltas, r = lora_updates(folder), rec["config"]["method"]["r"]
        elif rec["config"]["method"]["name"] == "full_ft":
            deltas, r = full_updates(folder, base, family), None
        else:
            continue
        updates[rec["run_id"]] = (rec, deltas, family)
        for module, delta in deltas.items():
            matrix = _matrix(module, family)
            shares = energy_share(delta)
            row = {"run": rec["run_id"], "method": rec["config"]["method"]["name"], "r": r, "matrix": matrix}
            energy.append({**row, **{f"top {n}": v for n, v in shares.items()}})
            if r is not None:
                s = torch.linalg.svdvals(delta)[:r]
                singular.append({**row, **{f"s{n + 1}": float(v) for n, v in enumerate(s)}})
            w0 = base[_base_key(module + ".weight", base)].double()
            shapes.setdefault(matrix, tuple(w0.shape))
            for rank in (r,) if r else (1, 8, 64):
                amplified.append({**row, "directions": rank, **amplification(delta, w0, rank)})
    lora = {rid: u for rid, u in updates.items() if _plain_lora(u[0]["config"])}
    for varied, label in (("method.r", "rank against rank"), ("seed", "seed against seed")):
        groups: dict[str, list] = {}
        for rid, (rec, _, _) in lora.items():
            groups.setdefault(id_without(rec["config"], varied), []).append(rid)
        for ids in groups.values():
            ids.sort(key=lambda rid: (lora[rid][0]["config"]["method"]["r"], lora[rid][0]["config"]["seed"]))
            for n, first in enumerate(ids):
                for second in ids[n + 1 :]:
                    (a, da, family), (b, db, _) = lora[first], lora[second]
                    ra, rb = a["config"]["method"]["r"], b["config"]["method"]["r"]
                    name = f"{label}: {first} (r={ra}, seed {a['config']['seed']}) against {second} "
                    name += f"(r={rb}, seed {b['config']['seed']})"  # the run ids: two pairs may share all else
                    similarity[name] = _mean_phi(da, db, ra, rb, family)
    return {
        "singular": pd.DataFrame(singular),
        "energy": pd.DataFrame(energy),
        "amplification": pd.DataFrame(amplified),
        "similarity": similarity,
        "shapes": shapes,
    }


def gaussian_energy(shape: tuple[int, int], seed: int = 0) -> dict[int, float]:
    """The energy share of a Gaussian matrix's top r directions: what a full-rank update would show."""
    return energy_share(torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))


def _display(name: str, title: str, frame: pd.DataFrame, index: list[str]) -> Table:
    def cell(v) -> str:
        return ("-" if pd.isna(v) else f"{v:.3f}") if isinstance(v, float) else str(v)

    counts = {c: frame[c].map(lambda v: "-" if pd.isna(v) else str(int(v))) for c in ("r", "directions") if c in frame}
    shown = frame.assign(**counts).map(cell).set_index(index)
    shown.index = [" · ".join(i) if isinstance(i, tuple) else i for i in shown.index]
    shown.index.name = " · ".join(index)
    return Table(name, title, shown)


def tables(found: dict) -> list[Table]:
    """Means over layers per run, method, rank and matrix; φ at a few (i, j)."""
    keys = ["run", "method", "r", "matrix"]
    out = []
    energy = found["energy"]
    if len(energy):
        mean = energy.groupby(keys, dropna=False).mean(numeric_only=True).reset_index()
        gaussian = [
            {
                "run": "Gaussian matrix",
                "method": "-",
                "matrix": m,
                **{f"top {r}": v for r, v in gaussian_energy(s).items()},
            }
            for m, s in sorted(found["shapes"].items())
        ]
        frame = pd.concat([mean, pd.DataFrame(gaussian)], ignore_index=True)
        out.append(_display("energy", "share of ‖ΔW‖² in its top r singular directions", frame, ["run", "matrix"]))
    if len(found["amplification"]):
        frame = found["amplification"].groupby([*keys, "directions"], dropna=False).mean(numeric_only=True)
        title = "‖ΔW‖_F and ‖Uᵀ W_0 V‖_F on r directions (ΔW's, W_0's own, random); factor: ‖ΔW‖_F / on ΔW's"
        out.append(_display("amplification", title, frame.reset_index(), ["run", "matrix", "directions"]))
    if len(found["singular"]):
        frame = found["singular"].groupby(keys, dropna=False).mean(numeric_only=True).reset_index()
        out.append(_display("singular", "singular values of LoRA's ΔW", frame, ["run", "matrix"]))
    for n, (name, grids) in enumerate(sorted(found["similarity"].items())):
        rows = []
        for matrix, phi in sorted(grids.items()):
            i_max, j_max = phi.shape
            for i in sorted({1, 2, 4, i_max} & set(range(1, i_max + 1))):
                columns = sorted({1, 2, 4, 8, j_max} & set(range(1, j_max + 1)))
                rows.append({"matrix": matrix, "i": str(i), **{f"j={j}": float(phi[i - 1, j - 1]) for j in columns}})
        out.append(_display(f"phi_{n}", f"φ(i, j), {name}", pd.DataFrame(rows), ["matrix", "i"]))
    return out


def figures(found: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = []
    for n, (name, grids) in enumerate(sorted(found["similarity"].items())):
        fig, axes = plt.subplots(1, len(grids), figsize=(4.5 * len(grids), 3), squeeze=False)
        for ax, (matrix, phi) in zip(axes[0], sorted(grids.items())):
            image = ax.imshow(
                phi.numpy(),
                vmin=0,
                vmax=1,
                aspect="auto",
                cmap="viridis",
                origin="lower",
                extent=(0.5, phi.shape[1] + 0.5, 0.5, phi.shape[0] + 0.5),
            )
            ax.set(title=f"W{matrix}", xlabel="j", ylabel="i")
        fig.colorbar(image, ax=axes[0].tolist(), label="φ(i, j)")
        fig.suptitle(name, fontsize=9)
        path = out / f"phi_{n}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        drawn.append(path)
    energy = found["energy"]
    if len(energy):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        columns = [c for c in energy.columns if c.startswith("top ")]
        ranks = [int(c.split()[1]) for c in columns]
        for (method, r, matrix), group in energy.groupby(["method", "r", "matrix"], dropna=False):
            label = f"{method}{'' if pd.isna(r) else f' r={int(r)}'} W{matrix}"
            ax.plot(ranks, group[columns].mean().to_numpy(), marker="o", label=label)
        ax.set(xscale="log", xlabel="top r singular directions", ylabel="share of ‖ΔW‖²", ylim=(0, 1.02))
        ax.set_xticks(ranks, [str(r) for r in ranks])
        ax.legend(fontsize=7)
        path = out / "energy.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        drawn.append(path)
    return drawn


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results"), help="folder of <sweep>/<run_id>.json records")
    parser.add_argument("--sweep", required=True, help="the sweep whose kept folders to read")
    parser.add_argument("--out", type=Path, help="where to write (default: <results>/report/<sweep>/delta_w)")
    args = parser.parse_args(argv)
    runs = results.load(args.results)
    runs = runs[runs.sweep == args.sweep]
    kept = results.kept_folders(runs, args.results)
    if not kept:
        parser.error(f"--sweep {args.sweep}: no finished run with a kept folder under {args.results}/{args.sweep}")
    found = analyse(kept)
    if not len(found["energy"]):
        parser.error(f"--sweep {args.sweep}: no kept LoRA adapter or full copy among its {len(kept)} kept folders")
    out = args.out or args.results / "report" / args.sweep / "delta_w"
    out.mkdir(parents=True, exist_ok=True)
    written = tables(found)
    for table in written:
        for ext, text in (("md", table.markdown()), ("tex", table.latex()), ("csv", table.csv())):
            (out / f"{table.name}.{ext}").write_text(text)
        print(f"## {table.name}: {table.title}\n\n{table.markdown()}")
    for path in figures(found, out):
        print(f"figure: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
