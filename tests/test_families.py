"""Every method on every family, on tiny random models (plumbing only), with trainable counts
checked against hand formulas; rank classification and greedy generation checked against a
plain one-sequence-at-a-time computation."""

from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from bench.launch import launch
from bench.predict import predict
from bench.runner import build
from bench.tasks import Example, TaskData, continuation

# preset per family, with its weights swapped for the tiny model of that family
PRESETS = {
    "bert": "minilm-l6",
    "deberta_v2": "deberta-v2-xxlarge",
    "llama": "smollm2-135m",
    "gpt2": "gpt2",
    "gpt_neox": "pythia-70m",
    "t5": "flan-t5-small",
}
FUSED = {"gpt2", "gpt_neox"}  # one q,k,v matrix: LoRA targets 'qkv' there

# tiny sizes (tests/tiny.py): hidden 32, 2 layers, 4 heads of 8; Llama 2 key/value heads; feed-forward 64
# (GPT-2's default inner size is 4 x 32 = 128); T5: 2 encoder + 2 decoder layers, gated wi_0/wi_1
H, R, L = 32, 8, 2
LORA_QV = {
    "bert": L * 2 * R * (H + H),
    "deberta_v2": L * 2 * R * (H + H),
    "llama": L * (R * (H + H) + R * (H + 16)),  # v maps 32 -> 2 heads x 8
    "gpt2": L * R * (H + 3 * H),  # qkv: 32 -> 96
    "gpt_neox": L * R * (H + 3 * H),
    "t5": (2 * 2 + 2 * 4) * R * (H + H),  # q,v: encoder self-attention; decoder self- and cross-attention
}
IA3 = {  # k and v outputs, the feed-forward output matrix's input
    "bert": L * (H + H + 64),
    "deberta_v2": L * (H + H + 64),
    "llama": L * (16 + 16 + 64),
    "gpt2": L * (3 * H + 128),  # qkv output and mlp.c_proj's 128 inputs
    "gpt_neox": L * (3 * H + 64),
    "t5": 6 * (H + H) + 4 * 64,  # six attention modules; four feed-forward blocks
}
PREFIX = {  # 10 tokens x key and value x key/value heads x head width, per attention module
    "bert": L * 2 * 10 * 4 * 8,
    "deberta_v2": L * 2 * 10 * 4 * 8,
    "llama": L * 2 * 10 * 2 * 8,
    "gpt2": L * 2 * 10 * 4 * 8,
    "gpt_neox": L * 2 * 10 * 4 * 8,
    "t5": 6 * 2 * 10 * 4 * 8,
}
BITFIT = {
    # per layer q,k,v,attention-output, 2 LayerNorms, output dense: 32 each; intermediate 64; + embeddings LayerNorm
    "bert": L * (7 * H + 64) + H,
    # BERT's per layer plus the relative-position key and query projections (pos_key_proj,
    # pos_query_proj); the embeddings' LayerNorm and the relative embeddings' LayerNorm
    "deberta_v2": L * (9 * H + 64) + H + H,
    # per layer 2 LayerNorms 32, c_attn 96, attn.c_proj 32, c_fc 128, mlp.c_proj 32; + final LayerNorm
    "gpt2": L * (2 * H + 3 * H + H + 128 + H) + H,
    "gpt_neox": L * (2 * H + 3 * H + H + 64 + H) + H,
}
# Pfeiffer adapters (the default kind), reduction factor 16: a bottleneck of 32 / 16 = 2 after every
# feed-forward output, 2·32·2 + 2 + 32 weights each; T5 has 2 encoder and 2 decoder feed-forward blocks
ADAPTER = {f: (4 if f == "t5" else L) * (2 * H * 2 + 2 + H) for f in PRESETS}
# LoHa (method=peft's default type), r 8 on q and v: two Hadamard factors of rank-8 pairs, 2·8·(in + out)
LOHA = {
    f: {"llama": L * 2 * 8 * ((H + H) + (H + 16)), "gpt_neox": L * 2 * 8 * (H + 3 * H), "t5": 12 * 2 * 8 * (H + H)}.get(
        f, L * 2 * 2 * 8 * (H + H)
    )
    for f in PRESETS
}
HEAD = {
    "bert": (H * H + H) + (H * 3 + 3),
    "deberta_v2": (H * H + H) + (H * 3 + 3),
}  # pooler, 3-way classifier; text-to-text families have none


def expected(family, method):
    """(status, method parameters) for a method on a family."""
    table = {
        "lora": LORA_QV.get(family),
        "ia3": IA3.get(family),
        "prefix_tuning": PREFIX.get(family),
        "prompt_tuning": 20 * H,  # T5: the encoder's prompt only
        "bitfit": BITFIT.get(family),
        "full_ft": None,
        "lomo": None,
        "adapter": ADAPTER[family],
        "peft": LOHA[family],
        "diff_pruning": "0.5%",
        "icl": 0,
        "probe": 0,
    }
    if method == "bitfit" and family in ("llama", "t5"):
        return "not_applicable", None
    if method == "peft" and family == "gpt2":  # peft's LoHa does not wrap Conv1D
        return "not_applicable", None
    if method == "icl" and family in ("bert", "deberta_v2"):
        return "not_applicable", None
    return "ok", table[method]


def run_config(make_config, tiny_models, family, *overrides):
    extra = ["method.targets=[qkv]"] if family in FUSED and "method=lora" in overrides else []
    extra += ["method.targets=[qkv,ff_out]"] if family in FUSED and "method=ia3" in overrides else []
    extra += ["method.targets=[qkv]"] if family in FUSED and "method=peft" in overrides else []
    # the test's own overrides come last and win
    return make_config(
        f"model={PRESETS[family]}",
        "model.source=hub",
        f"model.hub_id={tiny_models[family]}",
        "task.max_length=48",
        *[o for o in overrides if o.startswith("method=")],
        *extra,
        *overrides,
    )


@pytest.mark.slow  # every method on every family's tiny model
@pytest.mark.parametrize(
    "method",
    [
        "full_ft",
        "lomo",
        "adapter",
        "peft",
        "diff_pruning",
        "bitfit",
        "lora",
        "ia3",
        "prompt_tuning",
        "prefix_tuning",
        "icl",
        "probe",
    ],
)
@pytest.mark.parametrize("family", list(PRESETS))
def test_every_method_runs_on_every_family(make_config, tiny_models, family, method):
    overrides = [f"method={method}"] + (["method.shots=2"] if method == "icl" else [])
    rec = launch(run_config(make_config, tiny_models, family, *overrides))
    status, count = expected(family, method)
    assert rec.status == status, rec.error
    if status != "ok":
        assert rec.error.message
        return
    params = rec.params
    assert params["head"] == (0 if method in ("icl", "probe") else HEAD.get(family, 0))  # baselines train nothing
    if count == "0.5%":  # diff pruning keeps 0.5% of the frozen weights' entries
        count = round(0.005 * (params["total"] - params["head"]))
    assert params["method"] == (params["total"] - params["head"] if count is None else count)
    assert rec.metrics.size == 32 and 0 <= rec.metrics.accuracy <= 1
    assert rec.time.steps == {"icl": 0, "probe": 1}.get(method, 2)


# decoders whose tiny models came with their presets; counts of the methods whose formula is one line
NEWER = {"opt": "opt-125m", "gptj": "gpt-j-6b", "gpt_neo": "gpt-neo-1.3b", "bloom": "bloom-560m", "mpt": "mpt-7b"}
NEWER_COUNTS = {
    "lora": L * 2 * R * (H + H),  # q and v; BLOOM and MPT: the fused qkv, r·(32 + 96), the same total
    "adapter": L * (2 * H * 2 + 2 + H),
    "peft": L * 2 * 2 * 8 * (H + H),  # LoHa on q and v (or the fused qkv)
    "prompt_tuning": 20 * H,
}


@pytest.mark.slow  # the methods whose code depends on the family, on five more families' tiny models
@pytest.mark.parametrize(
    "method", ["adapter", "peft", "diff_pruning", "bitfit", "lora", "ia3", "prompt_tuning", "prefix_tuning"]
)
@pytest.mark.parametrize("family", list(NEWER))
def test_every_method_runs_on_the_newer_families(make_config, tiny_models, family, method):
    fused = family in ("bloom", "mpt")
    extra = {"lora": ["method.targets=[qkv]"], "peft": ["method.targets=[qkv]"], "ia3": ["method.targets=[qkv,ff_out]"]}
    overrides = [
        f"method={method}",
        *(extra.get(method, []) if fused else []),
        *(["method.shots=2"] if method == "icl" else []),
    ]
    rec = launch(
        make_config(
            f"model={NEWER[family]}",
            "model.source=hub",
            f"model.hub_id={tiny_models[family]}",
            "task.max_length=48",
            *overrides,
        )
    )
    if (method, family) in {
        ("bitfit", "mpt"),
        ("prefix_tuning", "gpt_neo"),
        ("prefix_tuning", "bloom"),
        ("prefix_tuning", "mpt"),
    }:
        assert rec.status == "not_applicable" and rec.error.message
        return
    assert rec.status == "ok", rec.error
    params = rec.params
    assert params["head"] == 0
    if method in NEWER_COUNTS:
        assert params["method"] == NEWER_COUNTS[method]
    assert rec.metrics.size == 32


def test_gpt2_refuses_q_alone_and_names_the_fusion(make_config, tiny_models):
    from bench.errors import ConfigError
    from bench.validate import validate

    with pytest.raises(ConfigError, match=r"method.targets.*fused matrix \(attn.c_attn\); target 'qkv'"):
        validate(run_config(make_config, tiny_models, "gpt2", "method=lora", "method.targets=[q]"))


def _plain_score(model, tokenizer, prompt, choice, architecture):
    """Mean log-probability per token of `choice` after `prompt`, one sequence, no padding."""
    if architecture == "encoder_decoder":
        source, target = tokenizer(prompt, return_tensors="pt"), tokenizer(choice, return_tensors="pt").input_ids
        logits = model(**source, labels=target).logits[0]
        return logits.log_softmax(-1)[torch.arange(target.shape[1]), target[0]].mean().item()
    source = tokenizer(prompt).input_ids
    target = tokenizer(continuation(prompt, choice), add_special_tokens=False).input_ids
    ids = torch.tensor([source + target])
    logits = model(input_ids=ids).logits[0, len(source) - 1 : -1]
    return logits.log_softmax(-1)[torch.arange(len(target)), torch.tensor(target)].mean().item()


@pytest.mark.slow  # scores every choice of every example one sequence at a time
@pytest.mark.parametrize("family", ["llama", "t5"])
def test_rank_classification_matches_one_sequence_at_a_time(make_config, tiny_models, family):
    auto = AutoModelForSeq2SeqLM if family == "t5" else AutoModelForCausalLM
    architecture = "encoder_decoder" if family == "t5" else "decoder"
    torch.manual_seed(0)
    model, tokenizer = (
        auto.from_pretrained(tiny_models[family]).eval(),
        AutoTokenizer.from_pretrained(tiny_models[family]),
    )
    # prompts of different lengths and choices of different token counts, so padding and masking matter
    examples = [
        Example("a", 0, prompt="the quick brown fox"),
        Example("b", 2, prompt="what is 12 + 34 ?"),
        Example("c", 1, prompt="lazy dog", choices=("yes", "no entailment")),
    ]
    task = TaskData(
        labels=["negative", "neutral", "positive tweet"], metrics=("accuracy",), train=[], validation=[], test=examples
    )
    cfg = make_config().task
    scores, loss = predict(model, tokenizer, task, examples, architecture, cfg, batch_size=4, device="cpu")
    with torch.no_grad():
        plain = [[_plain_score(model, tokenizer, e.prompt, c, architecture) for c in task.choices(e)] for e in examples]
    for got, want in zip(scores, plain):
        assert got == pytest.approx(want, abs=1e-4)
    assert loss == pytest.approx(-sum(p[e.label] for p, e in zip(plain, examples)) / 3, abs=1e-4)


@pytest.mark.parametrize("family", ["llama", "gpt2", "t5"])
def test_batched_greedy_generation_matches_token_by_token_argmax(make_config, tiny_models, family):
    auto = AutoModelForSeq2SeqLM if family == "t5" else AutoModelForCausalLM
    architecture = "encoder_decoder" if family == "t5" else "decoder"
    model, tokenizer = (
        auto.from_pretrained(tiny_models[family]).eval(),
        AutoTokenizer.from_pretrained(tiny_models[family]),
    )
    examples = [Example("a", prompt="what is 12 + 34 ?", target="46"), Example("b", prompt="the lazy dog", target="x")]
    task = TaskData(labels=[], metrics=("exact_match",), train=[], validation=[], test=examples, kind="generate")
    cfg = make_config("task.max_new_tokens=5").task
    texts, _ = predict(model, tokenizer, task, examples, architecture, cfg, batch_size=2, device="cpu")
    for e, text in zip(examples, texts):
        ids = tokenizer(e.prompt, return_tensors="pt").input_ids
        out = []
        with torch.no_grad():
            for _ in range(5):
                if architecture == "encoder_decoder":
                    decoder = torch.tensor([[model.config.decoder_start_token_id] + out])
                    nxt = model(input_ids=ids, decoder_input_ids=decoder).logits[0, -1].argmax().item()
                else:
                    nxt = (
                        model(input_ids=torch.cat([ids, torch.tensor([out], dtype=torch.long)], 1))
                        .logits[0, -1]
                        .argmax()
                        .item()
                    )
                if nxt == tokenizer.eos_token_id:
                    break
                out.append(nxt)
        assert text == tokenizer.decode(out, skip_special_tokens=True).strip()
    # a stop text (few-shot prompting's separator) cuts each output where it first occurs
    if family == "t5":
        return  # the seeded tiny T5 ends every output at once: nothing for a stop text to cut
    longest = max(texts, key=len)
    assert len(longest) >= 2, texts  # the tiny models are seeded: their greedy outputs are fixed
    stop = longest[len(longest) // 2 :][:2]
    stopped, _ = predict(
        model, tokenizer, replace(task, stop=stop), examples, architecture, cfg, batch_size=2, device="cpu"
    )
    assert stopped == [t.split(stop, 1)[0].strip() for t in texts] and longest not in stopped


def _greedy(model, tokenizer, prompt: str, steps: int) -> str:
    ids, out = tokenizer(prompt, return_tensors="pt").input_ids, []
    with torch.no_grad():
        for _ in range(steps):
            x = torch.cat([ids, torch.tensor([out], dtype=torch.long)], 1)
            nxt = model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, -1].argmax().item()
            if nxt == tokenizer.eos_token_id:
                break
            out.append(nxt)
    return tokenizer.decode(out, skip_special_tokens=True).strip()


@pytest.mark.slow  # the real SmolLM2: the tiny models' greedy outputs repeat one token whatever the prompt
@pytest.mark.parametrize("method", ["prompt_tuning", "prefix_tuning"])
def test_prompt_learning_generates_what_token_by_token_argmax_gives(make_config, method):
    # peft's batched, cached generation got these wrong (bench/predict.py): prompts of two lengths
    # make a left-padded batch
    from peft import (
        PrefixTuningConfig,
        PromptTuningConfig,
        PromptTuningInit,
        TaskType,
        get_peft_model,
    )

    from bench import models
    from bench.families import FAMILIES

    cfg = make_config("model=smollm2-135m", "task.max_new_tokens=8")
    base, tokenizer, path = models.load(cfg.model, FAMILIES[cfg.model.family], 0)
    torch.manual_seed(0)
    if method == "prompt_tuning":
        config = PromptTuningConfig(
            task_type=TaskType.CAUSAL_LM,
            num_virtual_tokens=8,
            prompt_tuning_init=PromptTuningInit.TEXT,
            prompt_tuning_init_text="Answer the sum. Answer the sum.",
            tokenizer_name_or_path=path,
        )
    else:
        config = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4)
    model = get_peft_model(base, config).eval()
    if method == "prefix_tuning":
        with torch.no_grad():  # a small random prefix: the model still answers, and the prefix matters
            for p in model.prompt_encoder.parameters():
                p.mul_(0.05)
    examples = [
        Example("a", prompt="What is 12 + 34?\n", target="46"),
        Example("b", prompt="Compute 372 plus 594.\n", target="966"),
    ]
    task = TaskData(labels=[], metrics=("exact_match",), train=[], validation=[], test=examples, kind="generate")
    texts, _ = predict(model, tokenizer, task, examples, "decoder", cfg.task, batch_size=2, device="cpu")
    assert texts == [_greedy(model, tokenizer, e.prompt, 8) for e in examples]


def test_decoder_batches_score_only_the_completion(make_config, tiny_models):
    cfg = run_config(make_config, tiny_models, "llama", "method=lora")
    built = build(cfg)
    task, tokenizer, architecture = built.task, built.tokenizer, built.architecture
    from bench.batching import IGNORE, training_rows

    row = training_rows(task, task.train[:1], tokenizer, architecture, cfg.task.max_length, cfg.task.max_new_tokens)[0]
    completion = [t for t in row["labels"] if t != IGNORE]
    # the label word after a space, then end-of-sequence; nothing of the prompt is a target
    assert tokenizer.decode(completion) == continuation("x", task.completion(task.train[0])) + tokenizer.eos_token
    assert row["input_ids"][-len(completion) :] == completion
