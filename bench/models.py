"""Model presets to a loaded model and tokenizer: the offline package copy when there is one, else the hub."""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)
from transformers.utils import logging

from bench import assets, quantization, random_weights
from bench.errors import ConfigError

# encoders get a fresh classification head; decoders and T5 keep their language-model head (text-to-text)
AUTO_CLASSES = {
    "encoder": AutoModelForSequenceClassification,
    "decoder": AutoModelForCausalLM,
    "encoder_decoder": AutoModelForSeq2SeqLM,
}


def load(cfg, family, num_labels: int, dtype: torch.dtype = torch.float32):
    """The model (in `dtype`: train.precision=bf16 loads in bfloat16) and its tokenizer: from the preset's
    source, or (model.weights=random) random weights in its shape with the tokenizer of model.tokenizer or
    of the preset's source, checked before the weights are built."""
    auto = AUTO_CLASSES[family.architecture]
    random = cfg.weights == "random"
    source = assets.source(cfg)
    extra = {"num_labels": num_labels} if family.architecture == "encoder" else {}
    quantize = quantization.config(cfg, family)
    if quantize is not None:
        extra["quantization_config"] = quantize
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the load report only says the new classifier is untrained
    path = cfg.tokenizer or source
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        if random:
            _check_vocabulary(cfg, tokenizer, path)
            path = str(random_weights.folder(cfg, auto))
        model = auto.from_pretrained(path, dtype=dtype, **extra)
    except OSError as e:
        where = "the hub" if path == cfg.hub_id else "its folder"
        hint = "; set model.tokenizer to a tokenizer folder" if random and path == source else ""
        raise OSError(f"model preset {cfg.name}: could not load {path!r} from {where}{hint}: {e}") from e
    finally:
        logging.set_verbosity(verbosity)
    if tokenizer.pad_token is None:  # decoders: pad with end-of-sequence, the model must know which id
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    if quantize is not None:
        model = quantization.prepare(model)
    return model, tokenizer, path


def _check_vocabulary(cfg, tokenizer, path: str) -> None:
    """Random weights take their tokenizer from elsewhere: an id beyond the embedding fails in the first forward."""
    if len(tokenizer) > cfg.config.vocab_size:
        raise ConfigError(
            "model.tokenizer",
            path,
            f"a tokenizer of at most the {cfg.config.vocab_size} ids of preset {cfg.name}'s embedding "
            f"(this one has {len(tokenizer)})",
        )
