"""The PyTorch side of ``minires bench``: what minires is measured against, on the same device.

It lives outside the ``minires`` package on purpose: the library never imports PyTorch.
``minires.bench.reference.load()`` loads this file from the source checkout when PyTorch is
installed (otherwise the benchmark prints minires alone). The CIFAR ResNet here is
the paper's (sec. 4.2, option A shortcuts), layer for layer the same as ``minires.models.resnet20``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from minires.bench.cost import ConvShape
from minires.bench.measure import PhasedStep
from minires.bench.timing import median_seconds


def set_tf32(enabled: bool) -> None:
    """Allow (or forbid) TF32 tensor-core math in cuBLAS and cuDNN for float32."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cudnn.benchmark = True  # let cuDNN pick its fastest algorithm per shape


def synchronizer(device: str):
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def use_threads(threads: int) -> int:
    """Give PyTorch ``threads`` intra-op threads; return how many it uses."""
    torch.set_num_threads(threads)
    return torch.get_num_threads()


def cuda_available() -> bool:
    return torch.cuda.is_available()


def versions() -> str:
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return f"torch {torch.__version__}" + (f", cuDNN {cudnn}" if cudnn else "")


def time_conv(shape: ConvShape, device: str, repeat: int, warmup: int) -> tuple[float, float]:
    """``(forward, backward)`` seconds of PyTorch's conv2d; backward is the op autograd runs
    (``convolution_backward``: data and weight gradients together, only the weight's for the
    network's first conv, whose input needs none)."""
    generator = torch.Generator().manual_seed(0)
    x, w, gy = (torch.randn(s, generator=generator).to(device) for s in (shape.x_shape, shape.w_shape, shape.y_shape))
    stride, padding = [shape.stride] * 2, [shape.padding] * 2
    sync = synchronizer(device)

    def backward():
        torch.ops.aten.convolution_backward(gy, x, w, None, stride, padding, [1, 1], False, [0, 0], 1,
                                            [not shape.first, True, False])

    with torch.no_grad():
        forward_s = median_seconds(lambda: F.conv2d(x, w, None, stride, padding), sync, repeat, warmup)
        return forward_s, median_seconds(backward, sync, repeat, warmup)


class _BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.extra_channels = stride, planes - in_planes

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.extra_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        return F.relu(out + shortcut)


def cifar_resnet(n: int, num_classes: int = 10) -> nn.Module:
    """The 6n+2-layer CIFAR-10 ResNet with option A (zero-padding) shortcuts."""
    layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    in_planes = 16
    for planes, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(n):
            layers.append(_BasicBlock(in_planes, planes, stride if i == 0 else 1))
            in_planes = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
    return nn.Sequential(*layers)


def training_step(n: int, batch: int, device: str):
    """A function running one training step of the 6n+2-layer ResNet (the recipe of minires.bench.measure)."""
    torch.manual_seed(0)
    model = cifar_resnet(n).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    images = torch.randn(batch, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    return PhasedStep(model, optimizer, images, labels, F.cross_entropy)


def time_training_step(n: int, batch: int, device: str, repeat: int, warmup: int) -> float:
    """Seconds per :func:`training_step`."""
    return median_seconds(training_step(n, batch, device), synchronizer(device), repeat, warmup)
