"""Serving mode: what answering requests costs with a tuned model, measured against its base model.

    python -m bench mode=serve                          # the default encoder (all-MiniLM-L6-v2)
    python -m bench mode=serve model=smollm2-135m

One process loads the base model once and builds, from copies of it, each way of serving it
(`VARIANTS`): the base model; LoRA and IA3 beside the frozen weights (peft's forward) and merged
into them (`merge_and_unload`: a plain model again, one copy per task); prompt tuning (a longer
sequence) and prefix tuning (longer keys and values). With `serve.tasks` task adapters on one base
model it also serves a batch whose rows belong to different tasks: LoRA in one forward, each row
through its own adapter (peft's `adapter_names`); LoRA in one forward per task's rows, switching the
active adapter between them; prompt tuning in one forward, each row with its own soft prompt
(`mixed_forward`: peft ignores `adapter_names` for prompt learning, and for IA3, whose mixed batches
are refused). Each method's settings are its conf/method YAML's, or the run's own `method=` for that method.

Timing: forward passes in eval mode without gradients (a classifier's logits; a decoder's prefill,
the pass before the first generated token, with logits for the last position only), at every batch
size and sequence length of `serve`, after `serve.warmup` untimed rounds, interleaved: each round
times every variant once, in a seeded random order, so that a slower moment of the machine falls
on all of them and no variant always follows the same one. Latency is the median and 90th percentile per
batch, throughput rows and tokens per
second at the median, and each variant's latency is also given relative to the base model's at the
same shape. The many-task variants run at batch sizes of at least two rows.

Beside time: the bytes each task stores (the method's own `save`, weight files only) against a full
model copy (the base model's `save_pretrained`), and the tensor bytes of serving `serve.tasks` tasks
as merged copies against one base model with that many adapters.

The task adapters start as each method initialises them, then each moves by its own seeded noise so
that the tasks differ (LoRA's B starts at zero: every adapter would otherwise be the identity). Their
values do not change the cost; they make the check that each mixed-batch row equals the same input
served alone with its adapter (`check_mixed`, recorded as the largest difference) mean something.
"""

from __future__ import annotations

import copy
import random
import time
import types
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import DictConfig
from peft import PeftModel, PeftType
from peft.utils.other import ModulesToSaveWrapper

from bench import assets, measure, meta, models, record
from bench.compose import method_config, to_container
from bench.errors import ConfigError
from bench.families import FAMILIES, Family
from bench.machine import device_of
from bench.methods import METHODS
from bench.predict import with_prompts
from bench.runner import seed_everything
from bench.validate import check_serve_lengths, validate

# variant -> the method it serves and how (each method's `serving`, bench/methods)
SERVED = {v: (name, s) for name, m in METHODS.items() for v, s in m.serving.items()}
VARIANTS = ("base", *SERVED)
MANY_TASKS = tuple(v for v, (_, s) in SERVED.items() if s.kind in ("mixed", "swapped"))  # batches of 2 rows or more
REFUSED = {v: why for m in METHODS.values() for v, why in m.refused_serving.items()}
# adapter types whose layers route each row of a batch through its own adapter when given `adapter_names`
MIXED_BY_PEFT = {PeftType.LORA}
NOISE = 0.02  # the standard deviation each task adapter moves by from its initialisation


def path_for(config: dict) -> Path:
    return Path(config["results_dir"]) / config["sweep_name"] / "serve" / f"{serve_id(config)}.json"


def serve_id(config: dict) -> str:
    """What defines a serving measurement: the model, the run's method settings, `serve`, seed and device."""
    keys = {k: config[k] for k in ("model", "method", "serve", "seed")}
    return record.kind_id(config["model"]["name"], "serve", {**keys, "device": config["train"]["device"]})


def check(cfg: DictConfig) -> None:
    """Raise ConfigError for serve settings that cannot be measured, before anything loads."""
    s = cfg.serve
    for v in s.variants:
        if v in REFUSED:
            raise ConfigError("serve.variants", list(s.variants), f"variants without {v!r}: {REFUSED[v]}")
        if v not in VARIANTS:
            raise ConfigError("serve.variants", list(s.variants), "names from: " + ", ".join(VARIANTS))
    if "base" not in s.variants:
        raise ConfigError(
            "serve.variants", list(s.variants), "a list that includes 'base': every latency is relative to it"
        )
    for key in ("batch_sizes", "lengths"):
        if not s[key] or any(n < 1 for n in s[key]):
            raise ConfigError(f"serve.{key}", list(s[key]), "a non-empty list of numbers >= 1")
    methods = {SERVED[v][0] for v in s.variants if v in SERVED}
    check_serve_lengths(cfg, max((METHODS[m].virtual_tokens(method_config(cfg, m)) for m in methods), default=0))
    if s.tasks < 2:
        raise ConfigError(
            "serve.tasks", s.tasks, "a number of task adapters >= 2 (rows of different tasks in one batch)"
        )
    if s.repeats < 1:
        raise ConfigError("serve.repeats", s.repeats, "a number of timed rounds >= 1")
    if s.warmup < 0:
        raise ConfigError("serve.warmup", s.warmup, "a number of untimed rounds >= 0")


def task_names(n: int) -> list[str]:
    return ["default"] + [f"task{i}" for i in range(1, n)]  # peft names the first adapter "default"


def with_adapters(base: torch.nn.Module, method_cfg, family: Family, tokenizer, n: int, seed: int) -> torch.nn.Module:
    """A copy of `base` with the method applied, as `n` task adapters (peft's, named by `task_names`),
    each moved from its initialisation by its own seeded noise; the first is active. A method of the
    project's own modules (prefix tuning) serves one task, as initialised with `seed`."""
    torch.manual_seed(seed)
    model = METHODS[method_cfg.name].apply(copy.deepcopy(base), method_cfg, family, tokenizer)
    if not isinstance(model, PeftModel):
        return model.eval()
    names = task_names(n)
    for i, name in enumerate(names):
        if i:
            model.add_adapter(name, copy.deepcopy(model.peft_config["default"]))
        model.set_adapter(name)  # makes this adapter's parameters (and its head copy) the trainable ones
        _move(model, seed * 1000 + i)
    model.set_adapter(names[0])
    return model.eval()


def merged_copy(model: PeftModel) -> torch.nn.Module:
    """A plain model with the active adapter folded into its weights (peft's `merge_and_unload`), the
    task head peft keeps per adapter put back first as the active copy: peft's IA3 unload fails on a
    head that is not a Linear (BERT's pooler)."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.modules_to_save[module.active_adapters[0]])
    return model.merge_and_unload()


def _move(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=generator).to(p.device, p.dtype) * NOISE)


@contextmanager
def _heads_per_row(model: PeftModel, names: list[str]):
    """peft's per-task copies of whole modules (an encoder's pooler and classifier) serve row i with
    the copy of task names[i]. peft's own mixed forward for them refuses any module but Linear,
    Embedding and Conv, and BERT's pooler is neither."""
    index = {n: torch.tensor([i for i, m in enumerate(names) if m == n]) for n in dict.fromkeys(names)}

    def per_row(wrapper, x, *args, adapter_names=None, **kwargs):
        out = None
        for name, rows in index.items():
            y = wrapper.modules_to_save[name](x[rows.to(x.device)], *args, **kwargs)
            out = y.new_empty((len(names), *y.shape[1:])) if out is None else out
            out[rows.to(y.device)] = y
        return out

    wrappers = [m for m in model.modules() if isinstance(m, ModulesToSaveWrapper)]
    for w in wrappers:
        w.forward = types.MethodType(per_row, w)
    try:
        yield
    finally:
        for w in wrappers:
            del w.forward  # the class's forward again


def _rows(batch: dict, index) -> dict:
    return {k: v[index] if torch.is_tensor(v) else v for k, v in batch.items()}


def mixed_forward(model: PeftModel, batch: dict, names: list[str]):
    """One forward pass in which row i is served by task adapter names[i]: LoRA through peft's
    `adapter_names`; prompt tuning here, each row's soft prompt before its embeddings (as peft's
    forward does for the active prompt); any other type is refused, since peft would silently
    serve every row with the active adapter."""
    kind = model.peft_config[names[0]].peft_type
    if kind in MIXED_BY_PEFT:
        with _heads_per_row(model, names):
            return model(**batch, adapter_names=names)
    if kind != PeftType.PROMPT_TUNING:
        raise ValueError(
            f"a mixed batch of {kind.value} adapters: peft ignores adapter_names for this type "
            "(every row would get the active adapter); mixed batches serve: "
            + ", ".join(sorted(t.value for t in MIXED_BY_PEFT | {PeftType.PROMPT_TUNING}))
        )
    with _heads_per_row(model, names):
        return model.get_base_model()(**with_prompts(model, batch, names))


def swapped_forward(model: PeftModel, batch: dict, names: list[str]) -> list:
    """One forward per task's rows, the active adapter switched between them (back to the first after)."""
    outputs = []
    for name in dict.fromkeys(names):
        rows = torch.tensor([i for i, n in enumerate(names) if n == name], device=batch["input_ids"].device)
        model.set_adapter(name)
        outputs.append(model(**_rows(batch, rows)))
    model.set_adapter(names[0])
    return outputs


@torch.no_grad()
def check_mixed(model: PeftModel, batch: dict, names: list[str]) -> float:
    """The largest absolute difference between a mixed batch's outputs and each row served alone
    with its adapter active."""
    mixed = mixed_forward(model, batch, names).logits
    worst = 0.0
    for i, name in enumerate(names):
        model.set_adapter(name)
        alone = model(**_rows(batch, slice(i, i + 1))).logits
        worst = max(worst, (mixed[i : i + 1] - alone).abs().max().item())
    model.set_adapter(names[0])
    return worst


def inputs(token_ids: list[int], rows: int, length: int, architecture: str, start_id: int | None, device: str) -> dict:
    """A batch of `rows` windows of exactly `length` real tokens (no padding), cut from `token_ids`."""
    need = rows * length
    ids = torch.tensor((token_ids * (need // len(token_ids) + 1))[:need]).view(rows, length).to(device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if architecture == "encoder_decoder":  # the first decoding step: the decoder reads its start token
        batch["decoder_input_ids"] = torch.full((rows, 1), start_id, device=device)
    if architecture == "decoder":  # prefill: only the last position's logits feed generation
        batch["logits_to_keep"] = 1
    return batch


def servers(cfg: DictConfig, base: torch.nn.Module, family: Family, tokenizer) -> tuple[dict, dict, dict]:
    """The models each variant serves with, the bytes per task, the reasons variants do not apply. A method's
    task model is `made[name]`; its merged copy `made[variant]`; its many task adapters `made[f"{name}_tasks"]`."""
    wanted, n, seed = set(cfg.serve.variants), cfg.serve.tasks, cfg.seed
    made: dict = {"base": base.eval()}
    size: dict = {"full_copy": measure.stored_bytes(lambda m, f: m.save_pretrained(str(f)), base, None)["bytes"]}
    skipped: dict = {}
    for name, method in METHODS.items():
        needed = wanted & set(method.serving)
        if not needed:
            continue
        method_cfg = method_config(cfg, name)
        reason = method.check(method_cfg, family)
        if reason:
            skipped.update(dict.fromkeys(needed, reason))
            continue
        model = with_adapters(base, method_cfg, family, tokenizer, 1, seed)
        size[name] = measure.stored_bytes(method.save, model, None)["bytes"]
        made[name] = model
        kinds = {method.serving[v].kind: v for v in needed}
        if "merged" in kinds:
            made[kinds["merged"]] = merged_copy(model).eval()
        if {"mixed", "swapped"} & set(kinds):
            made[f"{name}_tasks"] = with_adapters(base, method_cfg, family, tokenizer, n, seed)
    return made, size, skipped


def calls(made: dict, batch: dict, names: list[str], wanted) -> dict[str, Callable]:
    """Each variant's forward on this batch."""
    forwards = {"mixed": mixed_forward, "swapped": swapped_forward}
    out = {}
    for v in wanted:
        if v in MANY_TASKS and len(batch["input_ids"]) < 2:
            continue
        name, serving = SERVED.get(v, (None, None))
        if serving is not None and serving.kind in forwards:
            out[v] = lambda m=made[f"{name}_tasks"], f=forwards[serving.kind]: f(m, batch, names)
        elif v in made:
            out[v] = lambda m=made[v]: m(**batch)
    return out


@torch.no_grad()
def interleaved(
    timed: dict[str, Callable], repeats: int, warmup: int, sync: Callable, seed: int = 0
) -> dict[str, list[float]]:
    """Seconds per call of each, over `repeats` rounds after `warmup`; each round calls every one once,
    in a seeded random order, so that no variant always follows the same one (what ran before can
    leave the allocator and caches warm or cold for what runs next)."""
    names, seconds, order = list(timed), {n: [] for n in timed}, random.Random(seed)
    for r in range(warmup + repeats):
        for name in order.sample(names, len(names)):
            start = time.perf_counter()
            timed[name]()
            sync()
            if r >= warmup:
                seconds[name].append(time.perf_counter() - start)
    return seconds


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def memory(made: dict, n: int) -> dict:
    """Tensor bytes of serving n tasks as n merged copies, and as one base model with n adapters."""
    if "lora_tasks" not in made:
        return {}
    from peft import get_peft_model_state_dict

    base = tensor_bytes(made["base"].parameters())
    adapter = tensor_bytes(get_peft_model_state_dict(made["lora_tasks"], adapter_name="default").values())
    merged = tensor_bytes(made["lora_merged"].parameters()) if "lora_merged" in made else base
    return {
        "tasks": n,
        "base_bytes": base,
        "lora_adapter_bytes": adapter,
        "merged_copies_bytes": n * merged,
        "base_and_adapters_bytes": base + n * adapter,
        "ratio": (n * merged) / (base + n * adapter),
    }


def measure_serving(cfg: DictConfig) -> dict:
    """The record fields of one serving measurement."""
    family = FAMILIES[cfg.model.family]
    device = device_of(cfg)
    seed_everything(cfg.seed)
    num_labels, _ = meta.label_count(cfg, family)
    base, tokenizer, source = models.load(cfg.model, family, num_labels)
    architecture = family.architecture
    made, size, skipped = servers(cfg, base.to(device), family, tokenizer)
    for m in made.values():
        m.to(device)
    text = " ".join(assets.fetch_text(assets.LEE).read_text(encoding="utf-8").split())
    token_ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]  # cut into windows below
    names = [task_names(cfg.serve.tasks)[i % cfg.serve.tasks] for i in range(max(cfg.serve.batch_sizes))]
    start_id = getattr(base.config, "decoder_start_token_id", None)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    shapes, mixed_check = [], {}
    for rows in cfg.serve.batch_sizes:
        for length in cfg.serve.lengths:
            batch = inputs(token_ids, rows, length, architecture, start_id, device)
            seconds = interleaved(
                calls(made, batch, names[:rows], cfg.serve.variants),
                cfg.serve.repeats,
                cfg.serve.warmup,
                sync,
                cfg.seed,
            )
            shapes.append({"batch_size": rows, "length": length, "variants": _stats(seconds, rows, length)})
    check_batch = inputs(token_ids, cfg.serve.tasks, min(cfg.serve.lengths), architecture, start_id, device)
    for variant, model in (("lora_mixed", made.get("lora_tasks")), ("prompt_mixed", made.get("prompt_tuning_tasks"))):
        if model is not None and variant in cfg.serve.variants:
            mixed_check[variant] = check_mixed(model, check_batch, task_names(cfg.serve.tasks))
    return {
        "model_source": source,
        "serve": {
            "shapes": shapes,
            "stored_bytes": size,
            "memory": memory(made, cfg.serve.tasks),
            "mixed_max_abs_difference": mixed_check,
            "not_applicable": skipped,
            "methods": {n: to_container(method_config(cfg, n)) for n in dict.fromkeys(m for m, _ in SERVED.values())},
            "shared_process": False,
        },
        "environment": measure.environment(device),
    }


def _stats(seconds: dict[str, list[float]], rows: int, length: int) -> dict:
    out = {}
    for name, times in seconds.items():
        s = measure.latency_stats(times)
        out[name] = {
            **s,
            "rows_per_second": 1000 * rows / s["median_ms"],
            "tokens_per_second": 1000 * rows * length / s["median_ms"],
        }
    base = out["base"]["median_ms"]
    for s in out.values():
        s["relative_to_base"] = s["median_ms"] / base
    return out


def launch(cfg: DictConfig) -> record.Record:
    """Validate (raises ConfigError), measure, write the serve record, print its table."""
    validate(cfg)  # a method or task that does not apply matters not here: each variant says whether it applies
    check(cfg)
    config = to_container(cfg)
    path = path_for(config)
    started = record.now()
    fields: dict = {}
    try:
        fields = measure_serving(cfg)
        status, error = "ok", None
    except torch.OutOfMemoryError as e:
        status, error = "oom", record.error_of(e)
    except Exception as e:  # noqa: BLE001 - a failed measurement is recorded, like a failed run
        status, error = "failed", record.error_of(e)
    rec = record.new(config, status, run_id=path.stem, error=error, started=started, ended=record.now(), **fields)
    record.write(path, rec)
    print(summary(rec))
    print(f"  record {path}")
    return rec


def summary(rec: record.Record) -> str:
    what = f"serve {rec.config['model']['name']}"
    if rec.status != "ok":
        return f"{what}: {rec.status}: {rec.error.type}: {rec.error.message}"
    s = rec.serve
    lines = [f"{what}: median latency per batch (relative to the base model)"]
    for shape in s["shapes"]:
        cells = [
            f"{name} {v['median_ms']:.1f} ms ({v['relative_to_base']:.2f}x)" for name, v in shape["variants"].items()
        ]
        v = shape["variants"]
        if "lora_mixed" in v and "lora_swapped" in v:
            cells.append(
                "LoRA mixed batch / swapped sub-batches "
                f"{v['lora_mixed']['median_ms'] / v['lora_swapped']['median_ms']:.2f}"
            )
        lines.append(f"  batch {shape['batch_size']} x {shape['length']} tokens: " + "; ".join(cells))
    full = s["stored_bytes"]["full_copy"]
    lines.append(
        "  stored per task: "
        + "; ".join(
            f"{k} {v:,} B ({v / full:.2%} of a full copy)" for k, v in s["stored_bytes"].items() if k != "full_copy"
        )
    )
    if s["memory"]:
        m = s["memory"]
        lines.append(
            f"  {m['tasks']} tasks: merged copies {m['merged_copies_bytes'] / 2**20:.1f} MiB, one base and "
            f"{m['tasks']} LoRA adapters {m['base_and_adapters_bytes'] / 2**20:.1f} MiB ({m['ratio']:.2f}x)"
        )
    for variant, diff in s["mixed_max_abs_difference"].items():
        lines.append(f"  {variant}: each row as served alone, largest difference {diff:.2e}")
    for variant, why in s["not_applicable"].items():
        lines.append(f"  {variant}: not applicable: {why}")
    return "\n".join(lines)
