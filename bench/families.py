"""Per-architecture facts, in one table: which module is which matrix, biases, the task head.

Methods name matrices abstractly (q, k, v, o, ff_in, ff_out); this table maps each name to a
regular expression over module names, so one LoRA config means the same thing on every family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MATRICES = ("q", "k", "v", "o", "ff_in", "ff_out")


ARCHITECTURES = ("encoder", "decoder", "encoder_decoder")


@dataclass(frozen=True)
class Family:
    name: str
    # encoder: a classification head reads the last hidden state; decoder and encoder_decoder work
    # text-to-text (rank classification of label words, greedy generation)
    architecture: str
    # abstract matrix name -> regex matched (with re.search) against full module names
    matrices: dict[str, str]
    has_biases: bool
    # modules between the backbone's last hidden state and the logits that train in every method;
    # text-to-text families have none: their logits come from the pre-trained language-model head
    head: tuple[str, ...] = ()
    # abstract names that cannot be targeted alone, with the reason
    fused: dict[str, str] = field(default_factory=dict)
    # how attention is computed: through transformers' attention-function registry (where prefix
    # tuning enters), by DeBERTa's own disentangled attention (prefix tuning replaces its forward),
    # or by the model's own code outside the registry (GPT-Neo, and ALiBi in BLOOM and MPT): no prefix tuning
    attention: str = "registry"
    # the projections are transformers' Conv1D (GPT-2's transposed linear layers), which some peft types do not wrap
    conv1d: bool = False
    # the config key of a learned table of absolute positions, which no input may outrun, and how many of
    # its rows are not positions (RoBERTa's, below and at its padding index); None: relative, rotary or ALiBi
    # positions, which have no such limit
    positions: str | None = None
    position_offset: int = 0

    @property
    def form(self) -> str:
        """How tasks present examples to this family (bench.tasks.FORMS)."""
        return "encoder" if self.architecture == "encoder" else "text_to_text"

    def max_positions(self, config: dict) -> int | None:
        """The longest input the model's position table takes (`config`: its config.json), or None."""
        if self.positions is None or config.get(self.positions) is None:
            return None
        return config[self.positions] - self.position_offset

    def is_head(self, param_name: str) -> bool:
        return any(h in param_name.split(".") for h in self.head)

    def modules(self, model, names) -> list[str]:
        """Full module names in `model` for the abstract matrix `names`, in model order."""
        patterns = [re.compile(self.matrices[n]) for n in names]
        return [m for m, _ in model.named_modules() if any(p.search(m) for p in patterns)]


BERT_MATRICES = {
    "q": r"attention\.self\.query$",
    "k": r"attention\.self\.key$",
    "v": r"attention\.self\.value$",
    "o": r"attention\.output\.dense$",
    "ff_in": r"intermediate\.dense$",
    # plain `output.dense` would also match the attention output: anchor on the layer
    "ff_out": r"layer\.\d+\.output\.dense$",
}


def registry(families: list[Family]) -> dict[str, Family]:
    """Families by name; two of one name are refused (a dict would silently keep the last)."""
    out: dict[str, Family] = {}
    for f in families:
        if f.name in out:
            raise ValueError(
                f"family name {f.name!r} is taken: two Family entries in bench/families.py define it "
                f"(architectures {out[f.name].architecture} and {f.architecture})"
            )
        out[f.name] = f
    return out


FAMILIES: dict[str, Family] = registry(
    [
        Family(
            name="bert",
            architecture="encoder",
            positions="max_position_embeddings",
            matrices=BERT_MATRICES,
            has_biases=True,
            head=("pooler", "classifier"),
        ),
        Family(
            name="gpt2",
            architecture="decoder",
            positions="n_positions",
            matrices={
                "qkv": r"attn\.c_attn$",
                "o": r"attn\.c_proj$",
                "ff_in": r"mlp\.c_fc$",
                "ff_out": r"mlp\.c_proj$",
            },
            has_biases=True,
            conv1d=True,
            fused={
                m: "GPT-2 computes q, k and v with one fused matrix (attn.c_attn); target 'qkv' instead"
                for m in ("q", "k", "v")
            },
        ),
        Family(
            name="llama",
            architecture="decoder",
            matrices={
                "q": r"self_attn\.q_proj$",
                "k": r"self_attn\.k_proj$",
                "v": r"self_attn\.v_proj$",
                "o": r"self_attn\.o_proj$",
                "ff_in": r"mlp\.(gate|up)_proj$",
                "ff_out": r"mlp\.down_proj$",
            },
            has_biases=False,
        ),
        Family(
            name="t5",
            architecture="encoder_decoder",
            matrices={
                "q": r"(SelfAttention|EncDecAttention)\.q$",
                "k": r"(SelfAttention|EncDecAttention)\.k$",
                "v": r"(SelfAttention|EncDecAttention)\.v$",
                "o": r"(SelfAttention|EncDecAttention)\.o$",
                "ff_in": r"DenseReluDense\.wi(_0|_1)?$",
                "ff_out": r"DenseReluDense\.wo$",
            },
            has_biases=False,
        ),
        # BERT's module names; RobertaForSequenceClassification has no pooler: its head is
        # classifier.dense (+ tanh) and classifier.out_proj
        Family(
            name="roberta",
            architecture="encoder",
            positions="max_position_embeddings",
            position_offset=2,
            matrices=BERT_MATRICES,
            has_biases=True,
            head=("classifier",),
        ),
        Family(
            name="deberta_v2",
            architecture="encoder",
            matrices={
                "q": r"attention\.self\.query_proj$",
                "k": r"attention\.self\.key_proj$",
                "v": r"attention\.self\.value_proj$",
                "o": r"attention\.output\.dense$",
                "ff_in": r"intermediate\.dense$",
                "ff_out": r"layer\.\d+\.output\.dense$",
            },
            has_biases=True,
            head=("pooler", "classifier"),  # ContextPooler (dense + gelu), then the linear classifier
            attention="disentangled",
        ),
        Family(
            name="gpt_neox",  # Pythia
            architecture="decoder",
            matrices={
                "qkv": r"attention\.query_key_value$",
                "o": r"attention\.dense$",
                "ff_in": r"mlp\.dense_h_to_4h$",
                "ff_out": r"mlp\.dense_4h_to_h$",
            },
            has_biases=True,
            fused={
                m: "GPT-NeoX (Pythia) computes q, k and v with one fused matrix (attention.query_key_value); "
                "target 'qkv' instead"
                for m in ("q", "k", "v")
            },
        ),
        Family(
            name="gptj",  # GPT-J: attention and feed-forward in parallel; attention projections without biases
            architecture="decoder",
            matrices={
                "q": r"attn\.q_proj$",
                "k": r"attn\.k_proj$",
                "v": r"attn\.v_proj$",
                "o": r"attn\.out_proj$",
                "ff_in": r"mlp\.fc_in$",
                "ff_out": r"mlp\.fc_out$",
            },
            has_biases=True,
        ),
        Family(
            name="gpt_neo",  # GPT-Neo: GPT-2's block with separate q, k, v (no biases) and local attention layers
            architecture="decoder",
            positions="max_position_embeddings",
            matrices={
                "q": r"attn\.attention\.q_proj$",
                "k": r"attn\.attention\.k_proj$",
                "v": r"attn\.attention\.v_proj$",
                "o": r"attn\.attention\.out_proj$",
                "ff_in": r"mlp\.c_fc$",
                "ff_out": r"mlp\.c_proj$",
            },
            has_biases=True,
            attention="own",
        ),
        Family(
            name="bloom",  # BLOOM: ALiBi positions, a LayerNorm after the embeddings, fused q, k, v
            architecture="decoder",
            matrices={
                "qkv": r"self_attention\.query_key_value$",
                "o": r"self_attention\.dense$",
                "ff_in": r"mlp\.dense_h_to_4h$",
                "ff_out": r"mlp\.dense_4h_to_h$",
            },
            has_biases=True,
            attention="own",
            fused={
                m: "BLOOM computes q, k and v with one fused matrix (self_attention.query_key_value); "
                "target 'qkv' instead"
                for m in ("q", "k", "v")
            },
        ),
        Family(
            name="mpt",  # MPT: ALiBi positions, fused q, k, v, and no bias anywhere (no_bias, bias-free LayerNorms)
            architecture="decoder",
            matrices={
                "qkv": r"attn\.Wqkv$",
                "o": r"attn\.out_proj$",
                "ff_in": r"ffn\.up_proj$",
                "ff_out": r"ffn\.down_proj$",
            },
            has_biases=False,
            attention="own",
            fused={
                m: "MPT computes q, k and v with one fused matrix (attn.Wqkv); target 'qkv' instead"
                for m in ("q", "k", "v")
            },
        ),
        # OPT's layout is GPT-3's (pre-LayerNorm, learned positions, biases everywhere, tied embeddings)
        # with separate q, k, v projections; the configuration-only GPT-3 175B preset is built with it
        Family(
            name="opt",
            architecture="decoder",
            positions="max_position_embeddings",  # its table holds two rows more, for an offset it adds
            matrices={
                "q": r"self_attn\.q_proj$",
                "k": r"self_attn\.k_proj$",
                "v": r"self_attn\.v_proj$",
                "o": r"self_attn\.out_proj$",
                "ff_in": r"layers\.\d+\.fc1$",
                "ff_out": r"layers\.\d+\.fc2$",
            },
            has_biases=True,
        ),
    ]
)


def accepted_matrices(family: Family) -> list[str]:
    return sorted(set(family.matrices) | set(family.fused))
