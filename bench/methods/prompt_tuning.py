"""Prompt tuning (Lester et al. 2021): k trainable virtual token embeddings before the input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from bench.errors import ConfigError
from bench.methods import Method, MethodSchema, Serving, register, wrap_peft

INITS = ("random", "vocab", "text", "transfer")
PROMPT = "prompt_embeddings"  # the tensor's name in a kept adapter_model.safetensors


@dataclass
class PromptTuningSchema(MethodSchema):
    num_virtual_tokens: int = 20
    # random: peft's default; vocab: embeddings of tokens drawn from the vocabulary (peft's SAMPLE_VOCAB);
    # text: init_text's token embeddings, repeated to length (class labels: init_text="negative neutral positive");
    # transfer: the prompt another run trained (SPoT, Vu et al. 2022), from init_from
    init: str = "random"  # random | vocab | text | transfer
    init_text: str = "Classify the sentiment of this tweet:"
    # init=transfer: a prompt-tuning run's kept folder (<results_dir>/<sweep>/<run_id>) or its record (.json)
    init_from: str | None = None


def source_prompt(init_from: str) -> Path:
    """The kept adapter file that init_from names: the folder itself, or the folder a record's run kept."""
    path = Path(init_from)
    if path.suffix == ".json" and path.is_file():
        folder = (json.loads(path.read_text()).get("size") or {}).get("folder")
        path = Path(folder) if folder else path.with_suffix("")
    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        raise ConfigError(
            "method.init_from", init_from, "a prompt-tuning run's kept folder (adapter_model.safetensors) or its record"
        )
    return weights


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
        init = row.get("init")
        started = f", init {init}" if isinstance(init, str) and init != "random" else ""
        return f"prompt tuning ({row.num_virtual_tokens:g} tokens{started})"

    def check(self, cfg, family):
        if cfg.num_virtual_tokens < 1:
            raise ConfigError("method.num_virtual_tokens", cfg.num_virtual_tokens, "a count >= 1")
        if cfg.init not in INITS:
            raise ConfigError("method.init", cfg.init, f"one of {', '.join(INITS)}")
        if cfg.init == "text" and not cfg.init_text.strip():
            raise ConfigError("method.init_text", cfg.init_text, "a non-empty text when method.init=text")
        if cfg.init == "transfer" and not cfg.init_from:
            raise ConfigError("method.init_from", cfg.init_from, "a kept prompt folder, with method.init=transfer")
        if cfg.init != "transfer" and cfg.init_from:
            raise ConfigError("method.init", cfg.init, "transfer, which is the init that reads method.init_from")

    def check_sizes(self, cfg, width):
        if cfg.init != "transfer":
            return
        from safetensors import safe_open

        with safe_open(source_prompt(cfg.init_from), framework="pt") as f:
            if PROMPT not in f.keys():
                raise ConfigError("method.init_from", cfg.init_from, f"a prompt-tuning adapter (a {PROMPT} tensor)")
            shape = f.get_slice(PROMPT).get_shape()
        wanted = [cfg.num_virtual_tokens, width] if width else [cfg.num_virtual_tokens, shape[1]]
        if shape != wanted:
            raise ConfigError(
                "method.init_from",
                cfg.init_from,
                f"a prompt of {wanted[0]} tokens by {wanted[1]} (method.num_virtual_tokens by the model's width); "
                f"it holds {shape[0]} by {shape[1]}",
            )

    def countable(self, cfg):
        if cfg.init not in ("text", "transfer"):
            return cfg, []
        return OmegaConf.merge(cfg, {"init": "random", "init_from": None}), [
            f"prompt initialised at random (count mode loads no tokenizer or weights): same parameters as {cfg.init}"
        ]

    def apply(self, model, cfg, family, tokenizer):
        from peft import PromptTuningConfig, PromptTuningInit

        init = {
            "random": PromptTuningInit.RANDOM,
            "transfer": PromptTuningInit.RANDOM,  # then overwritten with the source prompt, below
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
        model = wrap_peft(model, config, family)
        if cfg.init == "transfer":
            import torch  # deferred, as every method's: the launcher imports methods without torch
            from safetensors.torch import load_file

            with torch.no_grad():
                model.prompt_encoder["default"].embedding.weight.copy_(load_file(source_prompt(cfg.init_from))[PROMPT])
        return model
