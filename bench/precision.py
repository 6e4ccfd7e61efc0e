"""Training precision (`train.precision`): what computes in a lower precision, and what is stored in one.

- fp32: everything in float32.
- bf16-mixed: weights, gradients and optimizer state in float32; the forward's matrix products (and so
  their backward) run in bfloat16 under autocast.
- bf16: as bf16-mixed, and the weights load in bfloat16; what trains is then put back in float32, so its
  gradients and optimizer state are float32 too, as peft keeps adapters on a half-precision model.
  Frozen weights take half the bytes; a method that trains every weight gains nothing.
- fp16-mixed: autocast to float16, with a gradient scaler: float16's narrow range would flush small
  gradients to zero, so the loss is scaled up before backward and the gradients down before the step.

Evaluation and serving measurements run under the same autocast as training, so a run is scored
the way it trained.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

# the dtype autocast computes in (None: no autocast)
AUTOCAST = {"fp32": None, "bf16-mixed": torch.bfloat16, "bf16": torch.bfloat16, "fp16-mixed": torch.float16}


def load_dtype(precision: str) -> torch.dtype:
    """The dtype weights load in."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def autocast(precision: str, device: str):
    dtype = AUTOCAST[precision]
    return torch.autocast(device_type=device, dtype=dtype) if dtype else nullcontext()


def keep_trained_in_float32(model: torch.nn.Module) -> None:
    """After a method is applied to a model loaded in a lower precision: what trains goes back to
    float32 (its optimizer state follows it), the frozen weights stay as they are."""
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()


def scaler(precision: str, device: str) -> torch.amp.GradScaler | None:
    return torch.amp.GradScaler(device) if precision == "fp16-mixed" else None
