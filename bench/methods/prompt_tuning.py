"""Prompt tuning (Lester et al. 2021): k trainable virtual token embeddings before the input."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import OmegaConf

from bench.errors import ConfigError
from bench.methods import Method, MethodSchema, Serving, register, wrap_peft

INITS = ("random", "vocab", "text")


@dataclass
class PromptTuningSchema(MethodSchema):
    num_virtual_tokens: int = 20
    # random: peft's default; vocab: embeddings of tokens drawn from the vocabulary (peft's SAMPLE_VOCAB);
    # text: init_text's token embeddings, repeated to length (class labels: init_text="negative neutral positive")
    init: str = "random"  # random | vocab | text
    init_text: str = "Classify the sentiment of this tweet:"


@register
class PromptTuning(Method):
    name = "prompt_tuning"
    schema = PromptTuningSchema
    serving = {
        "prompt_tuning": Serving("adapter", "prompt tuning"),
        "prompt_mixed": Serving("mixed", "prompt tuning, mixed-task batch"),
    }

    def peft_type(self, cfg):
        return "PROMPT_TUNING"

    def virtual_tokens(self, cfg):
        return cfg.num_virtual_tokens

    def label(self, row):
        return f"prompt tuning ({row.num_virtual_tokens:g} tokens)"

    def check(self, cfg, family):
        if cfg.num_virtual_tokens < 1:
            raise ConfigError("method.num_virtual_tokens", cfg.num_virtual_tokens, "a count >= 1")
        if cfg.init not in INITS:
            raise ConfigError("method.init", cfg.init, f"one of {', '.join(INITS)}")
        if cfg.init == "text" and not cfg.init_text.strip():
            raise ConfigError("method.init_text", cfg.init_text, "a non-empty text when method.init=text")

    def countable(self, cfg):
        if cfg.init != "text":
            return cfg, []
        return OmegaConf.merge(cfg, {"init": "random"}), [
            "prompt initialised at random (count mode loads no tokenizer): same parameters as from text"
        ]

    def apply(self, model, cfg, family, tokenizer):
        from peft import PromptTuningConfig, PromptTuningInit

        init = {
            "random": PromptTuningInit.RANDOM,
            "vocab": PromptTuningInit.SAMPLE_VOCAB,
            "text": PromptTuningInit.TEXT,
        }
        config = PromptTuningConfig(
            num_virtual_tokens=cfg.num_virtual_tokens,
            prompt_tuning_init=init[cfg.init],
            prompt_tuning_init_text=cfg.init_text if cfg.init == "text" else None,
            tokenizer_name_or_path=tokenizer.name_or_path if cfg.init == "text" else None,
            # T5: prompts on the encoder only, as Lester et al. (peft also prompts the decoder by default)
            num_transformer_submodules=1,
            # peft reads these from the config's dict under the usual names; MPT's are n_heads, n_layers, d_model
            num_attention_heads=model.config.num_attention_heads,
            num_layers=model.config.num_hidden_layers,
            token_dim=model.config.hidden_size,
        )
        return wrap_peft(model, config, family)
