"""The bottleneck adapter's module (bench/methods/adapter.py): h + up(act(down(h)))."""

import torch
from transformers.activations import ACT2FN


class Bottleneck(torch.nn.Module):
    def __init__(self, width: int, size: int, activation: str, like: torch.Tensor):
        super().__init__()
        self.down = torch.nn.Linear(width, size, device=like.device, dtype=like.dtype)
        self.act = ACT2FN[activation]
        self.up = torch.nn.Linear(size, width, device=like.device, dtype=like.dtype)
        torch.nn.init.zeros_(self.up.weight)
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h)))
