"""Tiny randomly initialised models of each family, with a small trained tokenizer, saved as
ordinary model folders: plumbing tests run every family offline in seconds. Never for accuracy."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    BertConfig,
    BertModel,
    BloomConfig,
    DebertaV2Config,
    DebertaV2Model,
    GPT2Config,
    GPTJConfig,
    GPTNeoConfig,
    GPTNeoXConfig,
    LlamaConfig,
    MptConfig,
    OPTConfig,
    PreTrainedTokenizerFast,
    T5Config,
)

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "what is 12 + 34 ? 12 + 34 = 46",
    "negative neutral positive sentiment tweet",
    "yes no true false entailment",
    "0 1 2 3 4 5 6 7 8 9 * / - = R",
]


def tokenizer(eos_suffix: bool) -> PreTrainedTokenizerFast:
    """Byte-level BPE over a few sentences; T5-style tokenizers end every text with </s>."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    if eos_suffix:
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def configs(vocab: int) -> dict:
    small = {"vocab_size": vocab, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    return {
        "bert": (
            BertModel,
            BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, **small),
        ),
        # relative attention in both directions, as DeBERTa-v2-XXL (disentangled attention)
        "deberta_v2": (
            DebertaV2Model,
            DebertaV2Config(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=64,
                relative_attention=True,
                position_buckets=16,
                pos_att_type=["p2c", "c2p"],
                norm_rel_ebd="layer_norm",
                position_biased_input=False,
                **small,
            ),
        ),
        "llama": (
            AutoModelForCausalLM,
            LlamaConfig(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=64,
                tie_word_embeddings=True,
                **small,
            ),
        ),
        "gpt2": (AutoModelForCausalLM, GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=256, **small)),
        "gpt_neox": (
            AutoModelForCausalLM,
            GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, **small),
        ),
        "opt": (
            AutoModelForCausalLM,
            OPTConfig(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                ffn_dim=64,
                word_embed_proj_dim=32,
                max_position_embeddings=256,
                **small,
            ),
        ),
        "gptj": (
            AutoModelForCausalLM,
            GPTJConfig(n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_inner=64, n_positions=256, **small),
        ),
        "gpt_neo": (
            AutoModelForCausalLM,
            GPTNeoConfig(
                hidden_size=32,
                num_layers=2,
                num_heads=4,
                intermediate_size=64,
                attention_types=[[["global", "local"], 1]],
                window_size=16,
                max_position_embeddings=256,
                **small,
            ),
        ),
        "bloom": (AutoModelForCausalLM, BloomConfig(hidden_size=32, n_layer=2, n_head=4, **small)),
        "mpt": (
            AutoModelForCausalLM,
            MptConfig(d_model=32, n_heads=4, n_layers=2, expansion_ratio=2, max_seq_len=256, **small),
        ),
        "t5": (
            AutoModelForSeq2SeqLM,
            T5Config(
                d_model=32,
                d_kv=8,
                d_ff=64,
                num_layers=2,
                num_heads=4,
                feed_forward_proj="gated-gelu",
                decoder_start_token_id=0,
                **small,
            ),
        ),
    }


def save_all(folder: Path) -> dict[str, Path]:
    """One folder per family under `folder`; returns family -> folder."""
    out = {}
    for family, (auto, config) in configs(300).items():
        path = folder / family
        torch.manual_seed(0)  # the same tiny weights on every machine
        model = auto.from_config(config) if hasattr(auto, "from_config") else auto(config)
        model.save_pretrained(path)
        tokenizer(eos_suffix=family == "t5").save_pretrained(path)
        out[family] = path
    return out


def changed_by_training(cfg) -> tuple[set[str], set[str]]:
    """(parameters that changed, parameters marked trainable) after cfg.train.max_steps real
    optimizer steps of the method in `cfg` through its own `fit`."""
    from bench.runner import build

    torch.manual_seed(cfg.seed)
    built = build(cfg)
    method, model = built.method, built.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loader = built.train_loader(cfg)
    method.fit(model, loader, cfg.method, cfg.train, "cpu")
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    return changed, {n for n, p in model.named_parameters() if p.requires_grad}
