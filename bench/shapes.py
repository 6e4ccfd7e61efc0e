"""Model shapes, read from a Hugging Face config in one place: what the fit estimate (bench/fit.py), the
FLOP count (bench/utilisation.py) and the counts need of an architecture (widths, layers, heads, key-value
heads, the feed-forward width and whether it is gated, vocabulary, tied embeddings).

The families name their sizes differently (GPT-2 n_embd, T5 d_model, MPT d_model and n_heads); their
configs' attribute_map gives every family here hidden_size, num_hidden_layers and num_attention_heads. The
feed-forward width has four names and a default: tests/test_shapes.py holds the reader to the published
shapes of a preset of each family and to the Linear layers a meta-device build makes.
"""

from __future__ import annotations

from dataclasses import dataclass

# config fields, by architecture, of the feed-forward width
FEED_FORWARD = ("intermediate_size", "ffn_dim", "d_ff", "n_inner")
# model types whose feed-forward block has three matrices (gate, up, down) instead of two; T5 says so in
# its config (is_gated_act)
GATED = {"llama", "mistral", "qwen2", "gemma", "gemma2", "gemma3_text"}


def gated(config) -> bool:
    return config.model_type in GATED or bool(getattr(config, "is_gated_act", False))


@dataclass(frozen=True)
class Shape:
    """A model's sizes, read from its Hugging Face config (Shape.of), with the weight sums its matrices make."""

    width: int  # d_model
    layers: int  # the only stack's layers; T5: the encoder's
    decoder_layers: int  # T5's decoder layers (self- and cross-attention); 0 for one-stack models
    heads: int  # attention (query) heads
    kv_heads: int  # key/value heads: fewer than heads under grouped-query attention
    q_width: int  # heads × head width: the query and attention-output projections' width
    kv_width: int  # key/value heads × head width: smaller than q_width under grouped-query attention
    ff_width: int  # the feed-forward block's inner width
    ff_inputs: int  # feed-forward matrices that read the block's input: 2 when gated (gate, up), else 1
    tied: bool  # the language-model head is the input embedding
    vocab: int
    labels: int  # a classification head's outputs
    pooler_width: int  # a classification head's pooler (DeBERTa: pooler_hidden_size)
    parallel: bool  # attention and feed-forward read the same input (GPT-J; GPT-NeoX's parallel residual)
    embed_width: int  # OPT's word-embedding width where it differs from d_model (project_in, project_out), else 0
    # DeBERTa's disentangled attention: each query (c2p) and each key (p2c) also scores 2 × span relative
    # positions; the relative-position table goes through its own key and query projections, or
    # (share_att_key) through the attention's, once per batch and layer
    position_columns: int = 0
    position_scores: tuple[str, ...] = ()
    position_shared: bool = False

    @classmethod
    def of(cls, config) -> Shape:
        """From a transformers config; its attribute_map gives every family here hidden_size,
        num_hidden_layers and num_attention_heads."""
        d, heads, kind = config.hidden_size, config.num_attention_heads, config.model_type
        head = getattr(config, "head_dim", None) or d // heads  # T5: d_kv
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        ff = next((v for v in (getattr(config, k, None) for k in FEED_FORWARD) if v), None)
        # GPT-2, GPT-Neo and BLOOM leave it unset for 4d; transformers' MPT builds 4d whatever expansion_ratio says
        # (MptMLP), and the reader follows what is built: MPT-7B's ratio is 4 anyway, d_ff 16,384
        if ff is None or kind == "mpt":
            ff = 4 * d
        embed = getattr(config, "word_embed_proj_dim", None)
        positions = {}
        if kind == "deberta-v2" and getattr(config, "relative_attention", False):
            buckets, most = getattr(config, "position_buckets", -1), getattr(config, "max_relative_positions", -1)
            span = buckets if buckets > 0 else (most if most >= 1 else config.max_position_embeddings)
            positions = {
                "position_columns": 2 * span,
                "position_scores": tuple(t for t in ("c2p", "p2c") if t in (config.pos_att_type or [])),
                "position_shared": bool(getattr(config, "share_att_key", False)),
            }
        return cls(
            width=d,
            layers=config.num_hidden_layers,
            decoder_layers=config.num_decoder_layers if config.is_encoder_decoder else 0,
            heads=heads,
            kv_heads=kv_heads,
            q_width=heads * head,
            kv_width=kv_heads * head,
            ff_width=ff,
            ff_inputs=2 if gated(config) else 1,
            tied=bool(getattr(config, "tie_word_embeddings", True)),
            vocab=config.vocab_size,
            labels=config.num_labels,
            pooler_width=getattr(config, "pooler_hidden_size", None) or d,
            parallel=kind == "gptj" or (kind == "gpt_neox" and config.use_parallel_residual),
            embed_width=embed if embed and embed != d else 0,
            **positions,
        )

    @property
    def gated(self) -> bool:
        return self.ff_inputs == 2

    # weights of the matrices multiplied per token (sums of inputs × outputs)
    def attention_weights(self) -> int:  # q, k, v and the output projection
        return 2 * self.width * self.q_width + 2 * self.width * self.kv_width

    def layer_weights(self) -> int:
        return self.attention_weights() + (self.ff_inputs + 1) * self.width * self.ff_width

    def lm_head_weights(self) -> int:
        return self.vocab * (self.embed_width or self.width)

    def classifier_weights(self) -> int:
        """A classification head on the first token: pooler (RoBERTa: dense layer), then the classifier."""
        return self.width * self.pooler_width + self.pooler_width * self.labels

    def matrix_weights(self, architecture: str) -> int:
        """Every weight-matrix parameter of the model (biases, embeddings and norms excluded): what a walk
        over its linear layers finds (the tests check that it does)."""
        n = self.layers * self.layer_weights() + 2 * self.width * self.embed_width
        n += self.decoder_layers * (self.layer_weights() + self.attention_weights())  # T5: + cross-attention
        n += 0 if self.position_shared else self.layers * len(self.position_scores) * self.width * self.q_width
        return n + (self.classifier_weights() if architecture == "encoder" else self.lm_head_weights())
