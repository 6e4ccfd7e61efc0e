"""Every method on the default model and task: exactly the intended parameters train, and
their number matches the method's formula."""

import pytest
import torch

from bench import batching
from bench.measure import count_params
from bench.runner import build, seed_everything
from bench.train import train

# all-MiniLM-L6-v2: 6 layers, width 384, feed-forward 1536; tweets: 3 labels
L, D, FF, LABELS = 6, 384, 1536, 3
HEAD = (D * D + D) + (D * LABELS + LABELS)  # pooler dense + classifier
BIASES = L * (4 * D + FF + D + 2 * D) + D  # q,k,v,o + ff_in + ff_out + 2 LayerNorms per layer, embedding LayerNorm

CASES = {
    "lora": (["method=lora"], L * 2 * 8 * (D + D), lambda n: "lora_" in n and (".query." in n or ".value." in n)),
    "lora_r64_qkvo": (
        ["method=lora", "method.r=64", "method.targets=[q,k,v,o]"],
        L * 4 * 64 * (D + D),
        lambda n: "lora_" in n and any(m in n for m in (".query.", ".key.", ".value.", ".attention.output.dense.")),
    ),
    "lora_ffn": (
        ["method=lora", "method.r=2", "method.targets=[ff_in,ff_out]"],
        L * 2 * 2 * (D + FF),
        lambda n: "lora_" in n and ".attention." not in n,
    ),
    "ia3": (["method=ia3"], L * (D + D + FF), lambda n: "ia3_l" in n),
    "prompt_tuning": (["method=prompt_tuning"], 20 * D, lambda n: "prompt_encoder" in n),
    "prompt_tuning_text": (
        ["method=prompt_tuning", "method.init=text", "method.num_virtual_tokens=5"],
        5 * D,
        lambda n: "prompt_encoder" in n,
    ),
    "prefix_tuning": (["method=prefix_tuning"], L * 2 * 10 * D, lambda n: ".prefix." in n),
    "bitfit": (["method=bitfit"], BIASES, lambda n: n.endswith(".bias")),
    "full_ft": (["method=full_ft"], None, lambda n: True),
}


def _is_head(name):
    return any(part in ("pooler", "classifier") for part in name.split("."))


@pytest.mark.slow  # a training step of the real default model per method
@pytest.mark.parametrize("case", CASES)
def test_method_trains_exactly_its_parameters(make_config, case):
    overrides, expected_method, intended = CASES[case]
    cfg = make_config(*overrides)
    seed_everything(cfg.seed)
    built = build(cfg)
    task, family, model, tokenizer, architecture = (
        built.task,
        built.family,
        built.model,
        built.tokenizer,
        built.architecture,
    )
    params = count_params(model, family)
    assert params["head"] == HEAD
    if expected_method is not None:
        assert params["method"] == expected_method
    else:
        assert params["trainable"] == params["total"]

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in trainable if intended(n) or _is_head(n)}
    assert any(intended(n) and not _is_head(n) for n in trainable)

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loader = batching.train_loader(task, tokenizer, architecture, cfg.task, cfg.train.batch_size, seed=0)
    # two steps: LoRA's B starts at zero, so A first gets a gradient in the second step
    train(model, loader, cfg.train, cfg.method.lr, "cpu", show_progress=False)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable, (
        f"changed but frozen: {changed - trainable}; trainable but unchanged: {trainable - changed}"
    )
