"""Full fine-tuning: every parameter trains."""

from bench.methods import Method, register


@register
class FullFineTuning(Method):
    name = "full_ft"
    trains_base = True
    title = "full fine-tuning"
    full_copy = True

    def apply(self, model, cfg, family, tokenizer):
        for p in model.parameters():
            p.requires_grad = True
        return model
