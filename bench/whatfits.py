"""What fits: every method, on a float and on a quantized base, estimated on the meta device against one
memory, without a weight loaded: the table to read before buying time on a GPU.

    python -m bench mode=fit model=llama2-70b train.memory_limit_gib=48
    python -m bench mode=fit model=llama2-7b train.memory_limit_gib=24 train.gradient_checkpointing=true

Each row is the run's config with another method (its conf/method YAML), `model.quantize` and, for a method
that trains with `train.optimizer`, AdamW in 32 or 8 bits (and, for full fine-tuning, GaLore, APOLLO,
APOLLO-Mini, Adam-mini and BAdam) beside the command's own, validated as
mode=count validates it (a combination that cannot run is left out: full fine-tuning on a quantized base),
counted and estimated by bench/fit.py: trainable parameters, the estimated peak and whether it fits
`train.memory_limit_gib` (else the device's memory), and where it does not, the largest batch size that does
and the peak with gradient checkpointing. The other settings (task, batch size, precision) are the command's.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf, open_dict

from bench import fit
from bench.compose import method_config
from bench.errors import ConfigError
from bench.families import FAMILIES
from bench.methods import METHODS
from bench.validate import validate

QUANTIZE = ("none", "nf4", "int8")
OPTIMIZERS = ("adamw", "adamw8bit")  # beside the command's own train.optimizer, for methods that do not fix theirs
FULL = ("galore", "apollo", "apollo_mini", "adam_mini", "badam")  # the memory-lean ones, for full fine-tuning


def variant(cfg: DictConfig, method: str, quantize: str, optimizer: str | None = None) -> DictConfig:
    """The command's config with `method` (its own settings) on a base stored as `quantize`, updated by
    `optimizer` (default: the command's, with its arguments; another starts from none)."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(out):
        out.method = method_config(cfg, method)
        out.model.quantize = quantize
        out.mode = "count"  # validated as a count is: a configuration-only preset has no weights to train
        if optimizer not in (None, cfg.train.optimizer):
            out.train.optimizer, out.train.optimizer_args = optimizer, {}
    return out


def optimizers_of(cfg: DictConfig, method: str) -> list[str]:
    m = METHODS[method]
    if not m.trains or m.optimizer:
        return [m.optimizer or cfg.train.optimizer]
    # GaLore projects the gradients of whole weight matrices: for a method that trains every weight
    return list(dict.fromkeys((cfg.train.optimizer, *OPTIMIZERS, *(FULL if m.full_copy else []))))


def row(cfg: DictConfig, method: str, quantize: str, optimizer: str | None = None) -> dict | None:
    """The estimate of one combination, or None where it cannot run or does not apply."""
    c = variant(cfg, method, quantize, optimizer)
    try:
        if validate(c):
            return None
    except ConfigError:
        return None
    model = fit.meta_model(c)
    m = METHODS[method]
    params = m.count(model, m.countable(c.method)[0], FAMILIES[c.model.family])
    est = fit.estimate(c, model)
    optimizer = METHODS[method].optimizer or c.train.optimizer if METHODS[method].trains else "-"
    return {"method": method, "quantize": quantize, "optimizer": optimizer, "trainable": params["trainable"], **est}


def table(cfg: DictConfig) -> list[dict]:
    return [
        r
        for method in METHODS
        for q in QUANTIZE
        for o in optimizers_of(cfg, method)
        if (r := row(cfg, method, q, o)) is not None
    ]


def launch(cfg: DictConfig) -> list[dict]:
    """Validate the command's own config, estimate every combination, print the table."""
    validate(variant(cfg, cfg.method.name, cfg.model.quantize))  # the command's own settings, refused as a run's
    rows = table(cfg)
    print(render(cfg, rows))
    return rows


def render(cfg: DictConfig, rows: list[dict]) -> str:
    t = cfg.train
    first = rows[0]
    lines = [
        f"what fits {cfg.model.name} in {first['limit_bytes'] / fit.GIB:,.1f} GiB ({first['limit_of']}), "
        f"task {cfg.task.name}: batch {t.batch_size}, {t.precision}"
        + (", gradient checkpointing" if t.gradient_checkpointing else ""),
        f"{'method':<14} {'base':<5} {'optimizer':<11} {'trainable':>15} {'peak GiB':>10}  fits  what would fit (GiB)",
    ]
    for r in rows:
        lines.append(
            f"{r['method']:<14} {r['quantize']:<5} {r['optimizer']:<11} {r['trainable']:>15,} "
            f"{r['bytes'] / fit.GIB:>10,.1f}  {'yes ' if r['fits'] else 'no  '}  {'' if r['fits'] else _levers(r)}"
        )
    return "\n".join(lines)


def _levers(r: dict) -> str:
    """The largest batch size that fits, and the peaks with gradient checkpointing and with bf16 weights."""
    w = r["would_fit"]
    batch = f"train.batch_size={w['batch_size']}" if w["batch_size"] else "no batch size"
    return (
        f"{batch}; gradient checkpointing {w['gradient_checkpointing_bytes'] / fit.GIB:,.1f}; "
        f"bf16 {w['bf16_bytes'] / fit.GIB:,.1f}"
    )
