r"""What a convolution costs: FLOPs and compulsory bytes per direction, and the CIFAR ResNets' conv layers.

**FLOPs.** Each direction of a convolution is one matrix product with the same multiply-adds
(forward :math:`Y = W X^{col}`, backward-data :math:`\bar X^{col} = W^\top \bar Y`, backward-weight
:math:`\bar W = \bar Y (X^{col})^\top`):

.. math::  \mathrm{MACs} = N\, C_\mathrm{out} H_\mathrm{out} W_\mathrm{out}\; C_\mathrm{in} k_h k_w,
           \qquad \mathrm{FLOPs} = 2\,\mathrm{MACs} \text{ per direction, } 6\,\mathrm{MACs} \text{ for all three.}

**Bytes** are the *compulsory* traffic: every array a direction reads or writes, touched once
(forward reads x and w and writes y; backward-data reads gy and w and writes gx; backward-weight
reads gy and x and writes gw). No implementation can move less; im2col moves more, since it writes
the column matrix and the GEMM reads it back (:meth:`ConvShape.im2col_bytes`, per direction that
builds it). FLOPs / bytes is the arithmetic intensity: below the card's FLOP/s-to-bandwidth ratio
a layer is bound by memory traffic, not arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..kernels.conv2d_index import ConvGeometry

DIRECTIONS = ("forward", "backward_data", "backward_weight")


@dataclass(frozen=True)
class ConvShape:
    """One convolution: NCHW input shape, weight shape, stride and padding (ints), ``count``, how
    many layers of a network have exactly this shape, and ``first``: the network's first conv,
    whose input is the images rather than another layer's output."""

    name: str
    x_shape: tuple
    w_shape: tuple
    stride: int = 1
    padding: int = 1
    count: int = 1
    first: bool = False

    @property
    def geometry(self) -> ConvGeometry:
        return ConvGeometry.of(self.x_shape, self.w_shape, (self.stride,) * 2, (self.padding,) * 2)

    @property
    def y_shape(self) -> tuple:
        g = self.geometry
        return g.n, g.c_out, g.out_h, g.out_w

    def macs(self) -> int:
        """Multiply-accumulates of one direction."""
        g = self.geometry
        return g.n * g.c_out * g.out_h * g.out_w * g.c_in * g.kh * g.kw

    @property
    def directions(self) -> tuple:
        """The directions a training step runs: all three, but no backward-data for the first conv (the
        images need no gradient)."""
        return ("forward", "backward_weight") if self.first else DIRECTIONS

    def flops(self, directions=None) -> int:
        """FLOPs of ``directions`` (default: the training step's, :attr:`directions`)."""
        return 2 * self.macs() * len(self.directions if directions is None else directions)

    def bytes(self, directions=None, itemsize: int = 4) -> int:
        """Compulsory bytes moved by ``directions`` (default: the training step's)."""
        directions = self.directions if directions is None else directions
        x, w, y = (_elements(s) for s in (self.x_shape, self.w_shape, self.y_shape))
        per_direction = {"forward": x + w + y, "backward_data": y + w + x, "backward_weight": y + x + w}
        return itemsize * sum(per_direction[d] for d in directions)

    def im2col_bytes(self, itemsize: int = 4) -> int:
        """Extra bytes of one explicit column matrix: written once, read once by the GEMM."""
        g = self.geometry
        return itemsize * 2 * (g.c_in * g.kh * g.kw) * (g.n * g.out_h * g.out_w)


def _elements(shape) -> int:
    total = 1
    for s in shape:
        total *= s
    return total


def cifar_resnet_convs(n: int, batch: int) -> list[ConvShape]:
    """The distinct conv layers of the paper's 6n+2-layer CIFAR-10 ResNet (sec. 4.2, option A
    shortcuts, so no projection convs), with how many layers have each shape: 6n + 1 convs in all."""
    return [
        ConvShape("conv1 3->16 @32", (batch, 3, 32, 32), (16, 3, 3, 3), first=True),
        ConvShape("16->16 @32", (batch, 16, 32, 32), (16, 16, 3, 3), count=2 * n),
        ConvShape("16->32 @32 s2", (batch, 16, 32, 32), (32, 16, 3, 3), stride=2),
        ConvShape("32->32 @16", (batch, 32, 16, 16), (32, 32, 3, 3), count=2 * n - 1),
        ConvShape("32->64 @16 s2", (batch, 32, 16, 16), (64, 32, 3, 3), stride=2),
        ConvShape("64->64 @8", (batch, 64, 8, 8), (64, 64, 3, 3), count=2 * n - 1),
    ]


def training_step_conv_flops(convs: list[ConvShape]) -> int:
    """Conv FLOPs of one training step: all three directions of every layer, except backward-data
    of the first layer, whose input, the images, needs no gradient (:attr:`ConvShape.directions`)."""
    return sum(c.count * c.flops() for c in convs)
