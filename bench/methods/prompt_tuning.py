"""Prompt tuning (Lester et al. 2021): k trainable virtual token embeddings before the input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.config import ConfigError
from bench.methods import Method, MethodSchema, register, wrap_peft

if TYPE_CHECKING:
    from peft import PeftModel


@dataclass
class PromptTuningSchema(MethodSchema):
    num_virtual_tokens: int = 20
    init: str = "random"  # random | text
    init_text: str = "Classify the sentiment of this tweet:"


@register
class PromptTuning(Method):
    name = "prompt_tuning"
    schema = PromptTuningSchema

    def check(self, cfg, family):
        if cfg.num_virtual_tokens < 1:
            raise ConfigError("method.num_virtual_tokens", cfg.num_virtual_tokens, "a count >= 1")
        if cfg.init not in ("random", "text"):
            raise ConfigError("method.init", cfg.init, "one of random, text")
        if cfg.init == "text" and not cfg.init_text.strip():
            raise ConfigError("method.init_text", cfg.init_text, "a non-empty text when method.init=text")

    def check_sizes(self, cfg, width, positions, max_length):
        if positions and cfg.num_virtual_tokens + max_length > positions:
            raise ConfigError("method.num_virtual_tokens", cfg.num_virtual_tokens,
                              f"at most {positions - max_length}: the prompt and task.max_length={max_length} input "
                              f"tokens must fit the model's {positions} positions")

    def apply(self, model, cfg, family, tokenizer):
        from peft import PromptTuningConfig, PromptTuningInit

        config = PromptTuningConfig(
            num_virtual_tokens=cfg.num_virtual_tokens,
            prompt_tuning_init=PromptTuningInit.TEXT if cfg.init == "text" else PromptTuningInit.RANDOM,
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


def with_prompts(model: PeftModel, batch: dict, names: list[str]) -> dict:
    """The base model's inputs for `batch` with row i's soft prompt (of task adapter names[i]) before
    its token embeddings, and the attention mask and token types extended to match: what peft's
    forward does with the active adapter's prompt, row by row (peft ignores `adapter_names` here)."""
    import torch

    ids, mask = batch["input_ids"], batch["attention_mask"]
    embeds = model.get_base_model().get_input_embeddings()(ids)
    prompts = torch.stack([model.prompt_encoder[n].embedding.weight for n in names]).to(embeds.dtype)
    rows, virtual = len(ids), prompts.shape[1]
    inputs = {k: v for k, v in batch.items() if k not in ("input_ids", "token_type_ids")}
    inputs["inputs_embeds"] = torch.cat([prompts, embeds], dim=1)
    inputs["attention_mask"] = torch.cat([mask.new_ones(rows, virtual), mask], dim=1)
    if "token_type_ids" in batch:
        inputs["token_type_ids"] = torch.cat([batch["token_type_ids"].new_zeros(rows, virtual), batch["token_type_ids"]], dim=1)
    return inputs
