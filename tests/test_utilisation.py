"""Model FLOPs per token against FLOPs counted by torch on one real training step of every family's tiny
model (tests/tiny.py) with the method applied as a run applies it; the device-peak cache and table; MFU."""

import json

import pytest
import torch
from test_families import NEWER, PRESETS
from torch.utils.flop_counter import FlopCounterMode, bmm_flop
from transformers import LlamaConfig

from bench import batching, utilisation
from bench.runner import build
from bench.shapes import Shape
from bench.utilisation import Peak, Training

FUSED = {"gpt2", "gpt_neox", "bloom", "mpt"}  # one q,k,v matrix: LoRA targets 'qkv' there
TOLERANCE = 0.02


def _sdpa(q, k, v, *args, out_shape=None, **kwargs):
    b, h, s, d = q
    return bmm_flop((b * h, s, d), (b * h, d, k[2])) + bmm_flop((b * h, s, k[2]), (b * h, k[2], v[3]))


def _sdpa_backward(grad, q, k, v, *args, out_shape=None, **kwargs):
    return 2 * _sdpa(q, k, v)  # the gradients of probabilities, q, k and v, without the kernel's recomputed scores


# torch's counter has no formula for the CPU's fused attention kernel: without one it counts it as 0 FLOPs
CPU_ATTENTION = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward,
}


def counted_step(model, architecture: str, rows: int, length: int, target: int) -> tuple[float, dict]:
    """FLOPs torch counts in one forward and backward of an unpadded batch, and the batch."""
    torch.manual_seed(0)
    ids = torch.randint(3, 300, (rows, length))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    batch["labels"] = {
        "encoder": torch.randint(0, 3, (rows,)),
        "decoder": ids.clone(),
        "encoder_decoder": torch.randint(3, 300, (rows, target)),
    }[architecture]
    model.train()
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        model(**batch).loss.backward()
    return counter.get_total_flops(), batch


@pytest.mark.parametrize("method", ["full_ft", "lora"])
@pytest.mark.parametrize("family", [*PRESETS, *NEWER])
def test_formula_matches_counted_flops(make_config, tiny_models, family, method):
    """Within 2% of torch's count on every family, for full fine-tuning and for LoRA (r 8 on q and v, as a
    run applies it). Seen: exact to the FLOP, but for LoRA on Llama, GPT-J and OPT, whose fused attention
    kernel also computes the first layer's key gradient (1.1-1.3% above the formula): nothing needs it
    (the frozen key projection reads frozen embeddings), so model FLOPs leave it out."""
    targets = ["method.targets=[qkv]"] if family in FUSED and method == "lora" else []
    cfg = make_config(
        f"model={PRESETS.get(family) or NEWER[family]}",
        "model.source=hub",
        f"model.hub_id={tiny_models[family]}",
        f"method={method}",
        *targets,
    )
    built = build(cfg)
    fam, model, architecture = built.family, built.model, built.architecture
    shape = Shape.of(model.get_base_model().config if hasattr(model, "get_base_model") else model.config)
    # the config's sizes give exactly the weight matrices the model has
    assert sum(m.weight.numel() for _, m, added in utilisation._matrices(model) if not added) == shape.matrix_weights(
        architecture
    )

    rows, length, target = 4, 24, 6
    flops, batch = counted_step(model, architecture, rows, length, target)
    tokens = batching.count_tokens(batch)
    assert tokens == rows * length  # unpadded: every token is a real one
    formula = utilisation.flops_per_token(
        model,
        fam,
        architecture,
        [length] * rows,
        [target] * rows if architecture == "encoder_decoder" else None,
        batch_size=rows,
    )
    assert formula == pytest.approx(flops / tokens, rel=TOLERANCE), (
        f"{family} {method}: {formula / (flops / tokens) - 1:+.2%}"
    )
    if method == "lora":  # the frozen model does no weight gradients: about 2/3 of full fine-tuning's work
        full = utilisation.model_flops_per_token(
            shape,
            architecture,
            Training(),
            [length] * rows,
            [target] * rows if architecture == "encoder_decoder" else None,
            rows,
        )
        assert formula < full


def test_full_fine_tuning_of_a_decoder_is_palms_6n_plus_attention():
    """PaLM appendix B: 6N + 12·L·H·Q·T per token for N matrix weights (the LM head's included), L layers,
    H heads of width Q and context T; LoRA on a frozen model: about 4N."""
    config = LlamaConfig(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, vocab_size=32000
    )  # Llama 2 7B
    shape, length = Shape.of(config), 2048
    n = 32 * (4 * 4096**2 + 3 * 4096 * 11008) + 32000 * 4096
    assert shape.matrix_weights("decoder") == n
    assert (
        utilisation.model_flops_per_token(shape, "decoder", Training(), length) == 6 * n + 12 * 32 * 32 * 128 * length
    )
    lora = Training(
        backbone=0.0,
        head=False,
        inputs=False,
        first_trains=frozenset({"q", "v"}),
        added=32 * 2 * 8 * 2 * 4096,
        added_first=2 * 8 * 4096,
    )
    frozen = utilisation.model_flops_per_token(shape, "decoder", lora, length)
    assert frozen == pytest.approx(4 * n + 12 * 32 * 32 * 128 * length, rel=0.01)  # attention's work is the same


def test_attention_is_counted_per_example_not_at_the_mean_length():
    shape = Shape.of(
        LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=100)
    )
    mixed = utilisation.model_flops_per_token(shape, "decoder", Training(), [10, 30])
    assert mixed > utilisation.model_flops_per_token(shape, "decoder", Training(), [20, 20])
    assert mixed == pytest.approx(
        (
            10 * utilisation.model_flops_per_token(shape, "decoder", Training(), 10)
            + 30 * utilisation.model_flops_per_token(shape, "decoder", Training(), 30)
        )
        / 40
    )


def test_lengths_of_training_rows():
    rows = [
        {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [8, 2]},
        {"input_ids": [5, 6], "attention_mask": [1, 1], "labels": [2]},
    ]
    assert utilisation.lengths_of(rows, "encoder_decoder") == ([3, 2], [2, 1])
    assert utilisation.lengths_of(rows, "decoder") == ([3, 2], None)


def test_cpu_probe_is_measured_once_per_machine_and_cached(tmp_path, monkeypatch):
    calls = []

    def timed(size, dtype, *args, **kwargs):
        calls.append((size, dtype))
        return 0.1  # 50 ms or more: the probe keeps its first size

    monkeypatch.setattr(utilisation, "_time_matmul", timed)
    monkeypatch.setattr(utilisation, "MachineLoad", lambda out: _Load(out, busy=False))
    first = utilisation.peak_flops("cpu", "fp32", cache_dir=tmp_path)
    assert calls == [(256, torch.float32)] and first.flops_per_second == 2 * 256**3 / 0.1
    assert first.source.startswith(f"matmul probe, float32, {torch.get_num_threads()} thread")
    again = utilisation.peak_flops("cpu", "fp32", cache_dir=tmp_path)
    assert again == first and len(calls) == 1  # read from the cache, not measured again
    cached = json.loads((tmp_path / "peak_flops.json").read_text())
    (key,) = cached
    assert key == f"{utilisation.cpu_name()} | {torch.get_num_threads()} threads | torch {torch.__version__} | float32"
    assert cached[key]["flops_per_second"] == first.flops_per_second
    # bf16 autocast runs compare against a bfloat16 probe, measured and kept beside the float32 one
    utilisation.peak_flops("cpu", "bf16-mixed", cache_dir=tmp_path)
    assert calls[-1] == (256, torch.bfloat16) and len(json.loads((tmp_path / "peak_flops.json").read_text())) == 2


class _Load:
    """What bench.measure.MachineLoad reports, fixed: whether other processes used the CPUs meanwhile."""

    def __init__(self, out: dict, busy: bool):
        self.out, self.busy = out, busy

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.out["busy"] = self.busy


def test_a_probe_taken_on_a_busy_machine_is_used_once_not_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(utilisation, "_time_matmul", lambda size, dtype: 0.1)
    monkeypatch.setattr(utilisation, "MachineLoad", lambda out: _Load(out, busy=True))
    peak = utilisation.peak_flops("cpu", "fp32", cache_dir=tmp_path)
    assert peak.flops_per_second == 2 * 256**3 / 0.1 and peak.source.endswith("machine busy, not cached)")
    assert not (tmp_path / "peak_flops.json").exists()


def test_probe_grows_the_matrices_until_a_product_takes_long_enough(tmp_path, monkeypatch):
    monkeypatch.setattr(utilisation, "_time_matmul", lambda size, dtype: size**3 / 1e10)  # 10 GFLOP/s
    peak = utilisation.cpu_peak("fp32", cache_dir=tmp_path)
    assert "1024x1024" in peak.source and peak.flops_per_second == pytest.approx(2e10)


def test_gpu_table_by_device_name(monkeypatch):
    assert utilisation.gpu_peak("NVIDIA H100 80GB HBM3", "bf16") == Peak(
        989.5e12, "datasheet: NVIDIA H100 SXM bf16 dense"
    )
    assert utilisation.gpu_peak("NVIDIA H100 PCIe", "bf16").flops_per_second == 756.5e12
    assert utilisation.gpu_peak("NVIDIA H200", "fp16").source == "datasheet: NVIDIA H200 SXM fp16 dense"
    assert utilisation.gpu_peak("NVIDIA A100-SXM4-40GB", "tf32").flops_per_second == 156e12
    assert utilisation.gpu_peak("NVIDIA A100 80GB PCIe", "fp32").flops_per_second == 19.5e12
    assert utilisation.gpu_peak("NVIDIA L40S", "bf16").flops_per_second == 362.05e12
    for unknown in ("NVIDIA GeForce RTX 4090", "NVIDIA L40", "NVIDIA GH200 480GB"):  # no row, and no look-alike row
        peak = utilisation.gpu_peak(unknown, "bf16")
        assert peak.flops_per_second is None and unknown in peak.source
    # the run's precision picks the column: float32 products run without tensor cores unless TF32 is on
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-80GB")
    monkeypatch.setattr(utilisation, "_tf32", lambda: False)
    assert utilisation.peak_flops("cuda", "fp32").source == "datasheet: NVIDIA A100 fp32 dense"
    assert utilisation.peak_flops("cuda:0", "bf16-mixed").flops_per_second == 312e12
    assert utilisation.peak_flops("cuda", "fp16-mixed").source == "datasheet: NVIDIA A100 fp16 dense"
    monkeypatch.setattr(utilisation, "_tf32", lambda: True)
    assert utilisation.peak_flops("cuda", "fp32").flops_per_second == 156e12


def test_utilisation_arithmetic():
    peak = Peak(1e12, "datasheet: NVIDIA H200 SXM bf16 dense")
    assert utilisation.utilisation(6e9, 50.0, peak) == {
        "flops_per_token": 6e9,
        "achieved_flops_per_second": 3e11,
        "peak_flops_per_second": 1e12,
        "peak_from": "datasheet: NVIDIA H200 SXM bf16 dense",
        "fraction": 0.3,
    }
    unknown = utilisation.utilisation(6e9, 50.0, Peak(None, "no datasheet peak for GPU 'X'"))
    assert unknown["achieved_flops_per_second"] == 3e11 and unknown["fraction"] is None
    assert utilisation.utilisation(6e9, None, peak)["fraction"] is None


@pytest.mark.parametrize("method", ["prompt_tuning", "prefix_tuning"])
@pytest.mark.parametrize("family", ["bert", "llama"])
def test_the_positions_a_method_adds_come_from_the_method(make_config, tiny_models, family, method):
    """Prompt tuning's soft prompt goes through every layer, prefix tuning's keys and values into every
    attention: the method says how many (its virtual_tokens and prefix_tokens), and the formula with them
    matches torch's count of a real step within the tolerance, and is larger than without them."""
    cfg = make_config(
        f"model={PRESETS.get(family) or NEWER[family]}",
        "model.source=hub",
        f"model.hub_id={tiny_models[family]}",
        f"method={method}",
        "method.num_virtual_tokens=8",
    )
    built = build(cfg)
    rows, length = 4, 24
    flops, batch = counted_step(built.model, built.architecture, rows, length, 6)
    added = built.method.virtual_tokens(cfg.method), built.method.prefix_tokens(cfg.method)
    assert added == ((8, 0) if method == "prompt_tuning" else (0, 8))
    formula = utilisation.flops_per_token(
        built.model,
        built.family,
        built.architecture,
        [length] * rows,
        batch_size=rows,
        virtual_tokens=added[0],
        prefix_tokens=added[1],
    )
    tokens = batching.count_tokens(batch)
    assert formula == pytest.approx(flops / tokens, rel=TOLERANCE), f"{formula / (flops / tokens) - 1:+.2%}"
    assert formula > utilisation.flops_per_token(
        built.model, built.family, built.architecture, [length] * rows, batch_size=rows
    )


def test_a_cache_that_cannot_be_written_is_said_not_raised(tmp_path, monkeypatch):
    monkeypatch.setattr(utilisation, "_time_matmul", lambda size, dtype: 0.1)
    monkeypatch.setattr(utilisation, "MachineLoad", lambda out: _Load(out, busy=False))
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # the cache folder's place is taken by a file: no folder can be made there
    peak = utilisation.peak_flops("cpu", "fp32", cache_dir=blocked / "cache")
    assert peak.flops_per_second == 2 * 256**3 / 0.1
    assert f"not cached: {blocked / 'cache'} is not writable" in peak.source


def test_answering_costs_a_third_of_a_full_fine_tuning_step():
    """Full fine-tuning's step: the forward, then backward's input and weight gradients, twice the forward's
    work each way (matrices and attention alike), so inference is exactly a third of it."""
    from bench.utilisation import Shape, Training, model_flops_per_token

    config = LlamaConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256, vocab_size=1000
    )
    shape = Shape.of(config)
    train = model_flops_per_token(shape, "decoder", Training(), [10, 30])
    answer = model_flops_per_token(shape, "decoder", Training(), [10, 30], inference=True)
    assert train == pytest.approx(3 * answer)
    # the forward by hand: each weight twice per token (q, k, v, o; gate, up, down), attention's 4·n²·width
    # per layer, the head over the vocabulary at every position
    weights = 2 * (4 * 64 * 64 + 3 * 64 * 256)
    by_hand = sum(2 * weights * n + 4 * n * n * 64 * 2 + 2 * 64 * 1000 * n for n in (10, 30)) / 40
    assert answer == pytest.approx(by_hand)
