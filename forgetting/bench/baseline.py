"""The plain-PyTorch baseline the benchmark compares our training step against.

What a PyTorch user would write for the same ResNet-9 and recipe: a torchvision `DataLoader`
over PIL images with per-image transforms (RandomCrop with reflect padding 4,
RandomHorizontalFlip, ToTensor, Normalize), batches copied to the device, a mean-reduced loss
and SGD with LR x batch size and weight decay 5e-4 (the mean-loss twin of the seed's summed
loss). Only the benchmark uses it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader


class PilImages(torch.utils.data.Dataset):
    """uint8 N x C x H x W images served one by one as PIL images through `transform`."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images = np.ascontiguousarray(images.permute(0, 2, 3, 1).numpy())
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def transforms(mean, std):
    """The usual torchvision CIFAR-10 training transforms, normalised like our pipeline."""
    import torchvision.transforms as T

    return T.Compose([T.RandomCrop(32, padding=4, padding_mode="reflect"),
                      T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize([m / 255 for m in mean], [s / 255 for s in std])])


def loader(images, labels, mean, std, batch_size: int, workers: int, device: torch.device,
           seed: int = 0) -> DataLoader:
    return DataLoader(PilImages(images, labels, transforms(mean, std)), batch_size=batch_size,
                      shuffle=True, drop_last=True, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(seed))


def endless(data: DataLoader):
    while True:
        yield from data


def make_step(model, batches, mean_lr: float, device: torch.device, autocast):
    """One baseline step per call: next batch from the loader, mean loss, SGD."""
    optimizer = torch.optim.SGD(model.parameters(), lr=mean_lr, momentum=0.9, nesterov=True,
                                weight_decay=5e-4)

    def step():
        x, y = next(batches)
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with autocast():
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step
