"""Per-architecture facts, in one table: which module is which matrix, biases, the task head.

Methods name matrices abstractly (q, k, v, o, ff_in, ff_out); this table maps each name to a
regular expression over module names, so one LoRA config means the same thing on every family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MATRICES = ("q", "k", "v", "o", "ff_in", "ff_out")


@dataclass(frozen=True)
class Family:
    name: str
    # abstract matrix name -> regex matched (with re.search) against full module names
    matrices: dict[str, str]
    has_biases: bool
    # modules between the backbone's last hidden state and the logits; they train in every method
    head: tuple[str, ...]
    # abstract names that cannot be targeted alone, with the reason
    fused: dict[str, str] = field(default_factory=dict)

    def modules(self, model, names) -> list[str]:
        """Full module names in `model` for the abstract matrix `names`, in model order."""
        patterns = [re.compile(self.matrices[n]) for n in names]
        return [m for m, _ in model.named_modules() if any(p.search(m) for p in patterns)]


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family(
            name="bert",
            matrices={
                "q": r"attention\.self\.query$",
                "k": r"attention\.self\.key$",
                "v": r"attention\.self\.value$",
                "o": r"attention\.output\.dense$",
                "ff_in": r"intermediate\.dense$",
                # plain `output.dense` would also match the attention output: anchor on the layer
                "ff_out": r"layer\.\d+\.output\.dense$",
            },
            has_biases=True,
            head=("pooler", "classifier"),
        ),
        Family(
            name="gpt2",
            matrices={
                "qkv": r"attn\.c_attn$",
                "o": r"attn\.c_proj$",
                "ff_in": r"mlp\.c_fc$",
                "ff_out": r"mlp\.c_proj$",
            },
            has_biases=True,
            head=("score",),
            fused={
                m: "GPT-2 computes q, k and v with one fused matrix (attn.c_attn); target 'qkv' instead"
                for m in ("q", "k", "v")
            },
        ),
        Family(
            name="llama",
            matrices={
                "q": r"self_attn\.q_proj$",
                "k": r"self_attn\.k_proj$",
                "v": r"self_attn\.v_proj$",
                "o": r"self_attn\.o_proj$",
                "ff_in": r"mlp\.(gate|up)_proj$",
                "ff_out": r"mlp\.down_proj$",
            },
            has_biases=False,
            head=("score",),
        ),
        Family(
            name="t5",
            matrices={
                "q": r"(SelfAttention|EncDecAttention)\.q$",
                "k": r"(SelfAttention|EncDecAttention)\.k$",
                "v": r"(SelfAttention|EncDecAttention)\.v$",
                "o": r"(SelfAttention|EncDecAttention)\.o$",
                "ff_in": r"DenseReluDense\.wi(_0|_1)?$",
                "ff_out": r"DenseReluDense\.wo$",
            },
            has_biases=False,
            head=("classification_head",),
        ),
    ]
}


def accepted_matrices(family: Family) -> list[str]:
    return sorted(set(family.matrices) | set(family.fused))
