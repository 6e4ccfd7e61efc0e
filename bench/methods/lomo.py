"""LOMO (Lv et al. 2023): full fine-tuning whose update is fused into backward, so that neither
gradients of the whole model nor optimizer state are ever held (bench/optimizers.py)."""

from bench.methods import register
from bench.methods.full_ft import FullFineTuning


@register
class Lomo(FullFineTuning):
    name = "lomo"
    title = "LOMO (full fine-tuning)"  # not full fine-tuning's own title: tables must tell the two apart
    optimizer = "lomo"
