"""FLOPs of a model's forward pass (the seed's 0.759 GFLOP per image for ResNet-9)."""

from __future__ import annotations

import torch
from torch import nn


def forward_flops(model: nn.Module, image_shape: tuple[int, ...] = (3, 32, 32)) -> int:
    """FLOPs (2 per multiply-add) of one image's forward pass, counted in eval mode; the mode is
    restored after."""
    from torch.utils.flop_counter import FlopCounterMode  # imports triton: not at start-up

    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros((1, *image_shape), device=device)
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
