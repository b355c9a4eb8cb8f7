"""Batched, device-resident augmentation with explicit, replayable parameters.

The training set sits on the device once, reflect-padded by `pad` pixels. A batch is cut out of
it with one gather: per image a crop offset (dy, dx) and a horizontal flip, folded into the
gather's column index, then normalised, then an optional cutout square set to zero (the mean).
Parameters are drawn on the CPU from a seeded generator, so a batch can be rebuilt exactly from
(indices, params).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugParams:
    dy: torch.Tensor  # int64 (B,), crop offset rows in [0, 2*pad]
    dx: torch.Tensor  # int64 (B,), crop offset columns in [0, 2*pad]
    flip: torch.Tensor  # bool (B,)
    cy: torch.Tensor  # int64 (B,), cutout top row (ignored when cutout == 0)
    cx: torch.Tensor  # int64 (B,), cutout left column

    def to(self, device: torch.device) -> AugParams:
        return AugParams(*(getattr(self, k).to(device) for k in ("dy", "dx", "flip", "cy", "cx")))

    def slice(self, start: int, stop: int) -> AugParams:
        return AugParams(self.dy[start:stop], self.dx[start:stop], self.flip[start:stop],
                         self.cy[start:stop], self.cx[start:stop])


def sample_params(n: int, size: int, pad: int, cutout: int, gen: torch.Generator) -> AugParams:
    """Draw crop offsets (uniform over (2*pad+1)^2 positions), flips (p=0.5), cutout corners."""
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    span = max(1, size - cutout + 1)
    cy = torch.randint(0, span, (n,), generator=gen)
    cx = torch.randint(0, span, (n,), generator=gen)
    return AugParams(dy, dx, flip, cy, cx)


class BatchMaker:
    """Turns (indices, params) into normalised float batches on the device."""

    def __init__(self, images: torch.Tensor, mean, std, device: torch.device,
                 dtype: torch.dtype, pad: int = 4, cutout: int = 0, augment: bool = True):
        self.size = images.shape[-1]
        self.pad = pad if augment else 0
        self.cutout = cutout
        self.augment = augment
        self.dtype = dtype
        if self.pad:  # once, on the CPU: reflect padding of uint8 is not on every device
            images = F.pad(images, (pad, pad, pad, pad), mode="reflect")
        self.images = images.to(device)
        self.mean = torch.tensor(mean, device=device, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device, dtype=torch.float32).view(1, -1, 1, 1)
        self._ar = torch.arange(self.size, device=device)
        self._channels = torch.arange(images.shape[1], device=device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return self.images.shape[0]

    def sample(self, n: int, gen: torch.Generator) -> AugParams:
        return sample_params(n, self.size, self.pad, self.cutout, gen)

    def draw_epoch(self, gen: torch.Generator) -> tuple[torch.Tensor, AugParams | None]:
        """An epoch's batch order and augmentation parameters, drawn from `gen` in this order;
        the same generator state gives the same epoch (training and the probe's replay).
        Drawn on the CPU, returned on the device: one copy per epoch, none per batch."""
        order = torch.randperm(len(self), generator=gen)
        params = self.sample(len(self), gen) if self.augment else None
        device = self.images.device
        return order.to(device), params.to(device) if params is not None else None

    def example(self, n: int) -> torch.Tensor:
        """A batch of the first n images, augmented as in training: for warm-ups and capture."""
        idx = torch.arange(n, device=self.images.device)
        return self.batch(idx, self.sample(n, torch.Generator().manual_seed(0))
                          if self.augment else None)

    def raw(self, idx: torch.Tensor, params: AugParams | None) -> torch.Tensor:
        """uint8 crops (B, C, S, S), before normalisation and cutout."""
        idx = idx.to(self.images.device, non_blocking=True)
        if not self.augment or params is None:
            if self.pad:
                return self.images[idx, :, self.pad:self.pad + self.size,
                                   self.pad:self.pad + self.size]
            return self.images[idx]
        dev = self.images.device
        dy = params.dy.to(dev, non_blocking=True)[:, None]
        dx = params.dx.to(dev, non_blocking=True)[:, None]
        flip = params.flip.to(dev, non_blocking=True)[:, None]
        rows = dy + self._ar
        cols = dx + torch.where(flip, self.size - 1 - self._ar, self._ar)
        return self.images[idx.view(-1, 1, 1, 1), self._channels, rows[:, None, :, None],
                           cols[:, None, None, :]]

    def batch(self, idx: torch.Tensor, params: AugParams | None = None) -> torch.Tensor:
        """Normalised float batch; without params the clean (centre, unflipped) images."""
        x = (self.raw(idx, params).float() - self.mean) / self.std
        if self.augment and self.cutout and params is not None:
            dev = x.device
            cy = params.cy.to(dev, non_blocking=True)[:, None]
            cx = params.cx.to(dev, non_blocking=True)[:, None]
            in_rows = (self._ar >= cy) & (self._ar < cy + self.cutout)  # (B, S)
            in_cols = (self._ar >= cx) & (self._ar < cx + self.cutout)
            keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
            x = x * keep[:, None].to(x.dtype)
        return x.to(self.dtype).contiguous(memory_format=torch.channels_last)


def get_batch(maker: BatchMaker, labels: torch.Tensor, order: torch.Tensor,
              params: AugParams | None, i: int, batch_size: int):
    """The i-th batch of an epoch: images (augmented when params are given) and labels."""
    lo, hi = i * batch_size, (i + 1) * batch_size
    idx = order[lo:hi]
    x = maker.batch(idx, params.slice(lo, hi) if params is not None else None)
    return x, labels[idx.to(labels.device, non_blocking=True)]
