"""BitFit (Ben Zaken et al. 2022): only the bias terms train, plus the task head."""

from bench.methods import Method, freeze_all_but_head, register


@register
class BitFit(Method):
    name = "bitfit"
    trains_base = True
    title = "BitFit"

    def check(self, cfg, family):
        if not family.has_biases:
            return f"BitFit trains bias terms and the {family.name} architecture has none"
        return None

    def apply(self, model, cfg, family, tokenizer):
        freeze_all_but_head(model, family)
        for n, p in model.named_parameters():
            if n.endswith(".bias"):
                p.requires_grad = True
        return model
