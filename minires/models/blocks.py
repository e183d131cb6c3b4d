r"""The building blocks of residual (and plain) networks, and the three kinds of shortcut.

A residual block computes :math:`y = \sigma(\mathcal F(x) + s(x))`: a *branch* :math:`\mathcal F`
of convolutions, a *shortcut* :math:`s` (the identity, or a projection where the shape changes) and
the add. A plain block is the same without the add. The gradient of the add reaches the shortcut
unchanged, which is the point of the paper.

Shortcut options (paper sec. 3.3), chosen by ``shortcut=``:

* ``"A"``: identity; where the shape changes, take every ``stride``-th pixel and append zero
  channels (no parameters; the paper's CIFAR choice).
* ``"B"``: a 1x1 projection (+ BN) only where the shape changes, identity elsewhere.
* ``"C"``: a 1x1 projection (+ BN) on every shortcut.

A shortcut that is not the identity is the block's ``downsample`` module (torchvision's name, so
``layer2.0.downsample.0.weight`` is where PyTorch has it); an identity shortcut is ``None``.

For experiments every block offers two handles:

* ``block.branch_end``: the module whose output is the branch's output :math:`\mathcal F(x)` (the
  last BN, before the add). A forward hook on it records the branch; a hook on every BN that follows
  a 3x3 conv records the paper's "layer responses" (Fig. 7).
* ``block.lesioned = True``: the block drops its branch and passes on what its shortcut carries, as
  in Veit et al.'s lesion study. A plain block has no shortcut, so a lesioned plain block becomes the
  identity (possible only where the block keeps the shape).
"""
from __future__ import annotations

from .. import functional as F
from ..nn import BatchNorm2d, Conv2d, LayerError, Module, ReLU, Sequential

SHORTCUT_OPTIONS = ("A", "B", "C")


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> Conv2d:
    return Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> Conv2d:
    return Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class ZeroPadShortcut(Module):
    """Option A's shortcut where the shape changes: ``x[:, :, ::stride, ::stride]`` followed by
    ``out_planes - in_planes`` zero channels. No parameters, so its gradient just drops the zeros."""

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, ((0, 0), (0, self.out_planes - self.in_planes), (0, 0), (0, 0)))

    def extra_repr(self):
        return f"{self.in_planes}, {self.out_planes}, stride={self.stride}"


def check_shortcut(option: str) -> None:
    if option not in SHORTCUT_OPTIONS:
        raise ValueError(f"shortcut must be one of {SHORTCUT_OPTIONS} (paper sec. 3.3), not {option!r}")


def make_shortcut(option: str, in_planes: int, out_planes: int, stride: int, batch_norm: bool = True):
    """The ``downsample`` module of a block for shortcut ``option`` ("A", "B", "C"), or None for the identity.

    ``batch_norm=False`` leaves the BN out of projections (pre-activation blocks project the
    already normalised input).
    """
    check_shortcut(option)
    shape_changes = stride != 1 or in_planes != out_planes
    if option == "C" or (option == "B" and shape_changes):
        projection = [conv1x1(in_planes, out_planes, stride)] + ([BatchNorm2d(out_planes)] if batch_norm else [])
        return Sequential(*projection)
    return ZeroPadShortcut(in_planes, out_planes, stride) if shape_changes else None


class Block(Module):
    """What every block shares: the residual switch, the shortcut, and lesioning."""

    expansion = 1

    def __init__(self, in_planes: int, out_planes: int, stride: int, residual: bool):
        super().__init__()
        self.residual, self.lesioned = bool(residual), False
        self.keeps_shape = stride == 1 and in_planes == out_planes

    @property
    def branch_end(self) -> Module:
        """The module whose output is the branch output (hook it to record :math:`\\mathcal F(x)`)."""
        raise NotImplementedError

    def shortcut(self, x):
        return x if self.downsample is None else self.downsample(x)

    def plain_lesion(self, x):
        """A lesioned plain block: the identity, if the block keeps the shape."""
        if not self.keeps_shape:
            raise LayerError(self, "a lesioned plain block becomes the identity, but this block changes the "
                                   "shape (stride or width); lesion a block that keeps the shape instead")
        return x

    def extra_repr(self):
        flags = [] if self.residual else ["plain"]
        return ", ".join(flags + (["lesioned"] if self.lesioned else []))


class PostActivationBlock(Block):
    r"""The original block: :math:`y = \mathrm{relu}(\mathcal F(x) + s(x))`, :math:`\mathcal F` ending in BN."""

    def branch(self, x):
        raise NotImplementedError

    def forward(self, x):
        if self.lesioned and not self.residual:
            return self.plain_lesion(x)
        if self.lesioned:
            return self.relu(self.shortcut(x))
        out = self.branch(x)
        return self.relu(out + self.shortcut(x) if self.residual else out)


class BasicBlock(PostActivationBlock):
    """Two 3x3 convs (ResNet-18/34 and the CIFAR nets): conv-BN-ReLU-conv-BN, add, ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, residual: bool = True, shortcut: str = "A"):
        super().__init__(in_planes, planes, stride, residual)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = BatchNorm2d(planes)
        self.relu = ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = BatchNorm2d(planes)
        self.downsample = make_shortcut(shortcut, in_planes, planes, stride) if residual else None

    @property
    def branch_end(self):
        return self.bn2

    def branch(self, x):
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))


class Bottleneck(PostActivationBlock):
    """1x1 (reduce) - 3x3 - 1x1 (expand by 4), each followed by BN (ResNet-50/101/152).

    The paper puts the stride on the first 1x1 conv (``stride_in_3x3=False``, Table 1's FLOPs);
    torchvision's "v1.5" puts it on the 3x3 (``stride_in_3x3=True``). Parameters are the same.
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, residual: bool = True, shortcut: str = "B",
                 stride_in_3x3: bool = False):
        out_planes = planes * self.expansion
        super().__init__(in_planes, out_planes, stride, residual)
        self.conv1 = conv1x1(in_planes, planes, 1 if stride_in_3x3 else stride)
        self.bn1 = BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride if stride_in_3x3 else 1)
        self.bn2 = BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_planes)
        self.bn3 = BatchNorm2d(out_planes)
        self.relu = ReLU()
        self.downsample = make_shortcut(shortcut, in_planes, out_planes, stride) if residual else None

    @property
    def branch_end(self):
        return self.bn3

    def branch(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.bn3(self.conv3(x))


class PreActBlock(Block):
    r"""Full pre-activation block (He et al., "Identity Mappings in Deep Residual Networks"):
    :math:`y = x + \mathrm{conv}(\mathrm{relu}(\mathrm{bn}(\mathrm{conv}(\mathrm{relu}(\mathrm{bn}(x))))))`.

    Nothing follows the add, so the shortcut path from block to block is a pure identity. Where the
    shape changes, the shortcut takes the pre-activated input :math:`\mathrm{relu}(\mathrm{bn_1}(x))`.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, residual: bool = True, shortcut: str = "A"):
        super().__init__(in_planes, planes, stride, residual)
        self.bn1 = BatchNorm2d(in_planes)
        self.relu = ReLU()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn2 = BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = (make_shortcut(shortcut, in_planes, planes, stride, batch_norm=False)
                           if residual else None)

    @property
    def branch_end(self):
        return self.conv2

    def forward(self, x):
        if self.lesioned and not self.residual:
            return self.plain_lesion(x)
        pre = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(pre)
        if self.lesioned:
            return shortcut
        out = self.conv2(self.relu(self.bn2(self.conv1(pre))))
        return out + shortcut if self.residual else out
