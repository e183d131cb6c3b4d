"""The paper's networks: CIFAR ResNets/plain nets (6n+2 layers) and ImageNet ResNet-18...152 / plain-18/34.

One class, :class:`ResNet`, builds both families: a stem (``conv1``, ``bn1``, ``relu`` and, on
ImageNet, ``maxpool``), stages ``layer1``, ``layer2``, ... of blocks, global average pooling
``avgpool`` and the classifier ``fc``. These are torchvision's attribute names, so state-dict keys
(``layer1.0.bn2.running_var``, ``layer2.0.downsample.0.weight``, ``fc.bias``) match a PyTorch model
built the same way, for the CIFAR nets too.

Initialisation follows the paper: He normal for every conv (``mode="fan_out"``, as torchvision),
BN weight 1 and bias 0, PyTorch's default for ``fc``. ``zero_init_residual=True`` zeroes the weight
of each block's ``branch_end`` (the last BN; the last conv in a pre-activation block), so every
block starts as its shortcut (refused for plain nets, which have no shortcut to start as).
"""
from __future__ import annotations

from .. import functional as F
from ..checks import positive_int
from ..nn import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, Module, ReLU, Sequential, init
from .blocks import BasicBlock, Bottleneck, PreActBlock, check_shortcut, conv3x3

IMAGENET_CONFIGS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
                    50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3)),
                    152: (Bottleneck, (3, 8, 36, 3))}


class ResNet(Module):
    """Stem, stages (``stage_depths[i]`` blocks of class ``block`` and width ``widths[i]``), pool, fc.

    ``conv1`` is the stem convolution and ``maxpool`` the optional stem pooling. ``preact=True``
    (with :class:`PreActBlock`) leaves the stem without BN-ReLU and adds ``final_bn`` + ReLU after
    the last stage, as in "Identity Mappings". ``block_options`` go to every block (``residual``,
    ``shortcut``, ``stride_in_3x3``). The first block of every stage but the first has stride 2.
    """

    def __init__(self, block, stage_depths, widths, conv1: Conv2d, maxpool: Module | None = None,
                 num_classes: int = 10, preact: bool = False, zero_init_residual: bool = False,
                 input_size: int = 32, **block_options):
        super().__init__()
        if zero_init_residual and not block_options.get("residual", True):
            raise ValueError("ResNet: zero_init_residual=True makes every block start as its shortcut, but a plain "
                             "net (residual=False) has none: every block would output zeros and the net's output "
                             "would not depend on its input; leave zero_init_residual off for plain nets")
        self.preact = preact
        self.default_input_shape = (conv1.in_channels, input_size, input_size)
        self.conv1 = conv1
        planes = conv1.out_channels
        if not preact:
            self.bn1 = BatchNorm2d(planes)
        self.relu = ReLU()
        self.maxpool = maxpool
        self.stages = []
        for index, (depth, width) in enumerate(zip(stage_depths, widths)):
            stage, planes = _stage(block, planes, width, depth, 1 if index == 0 else 2, block_options)
            setattr(self, f"layer{index + 1}", stage)
            self.stages.append(stage)
        if preact:
            self.final_bn = BatchNorm2d(planes)
        self.avgpool = AdaptiveAvgPool2d(1)
        self.fc = Linear(planes, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, Conv2d):
                init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        for block in self.blocks() if zero_init_residual else ():
            init.zeros_(block.branch_end.weight)

    def blocks(self):
        """Every block, in order (``layer1.0``, ``layer1.1``, ...)."""
        return [block for stage in self.stages for block in stage]

    def forward(self, x):
        x = self.conv1(x)
        if not self.preact:
            x = self.relu(self.bn1(x))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for stage in self.stages:
            x = stage(x)
        if self.preact:
            x = self.relu(self.final_bn(x))
        return self.fc(F.flatten(self.avgpool(x), 1))


def _stage(block, in_planes: int, planes: int, depth: int, stride: int, block_options: dict):
    """``depth`` blocks, the first with ``stride``; returns the stage and its output width."""
    blocks = []
    for i in range(depth):
        blocks.append(block(in_planes, planes, stride if i == 0 else 1, **block_options))
        in_planes = planes * block.expansion
    return Sequential(*blocks), in_planes


def is_cifar_depth(depth) -> bool:
    """Whether ``depth`` is a CIFAR net's: 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...)."""
    return positive_int.holds(depth) and depth >= 8 and (depth - 2) % 6 == 0


def cifar_resnet(depth: int, residual: bool = True, shortcut: str = "A", width: int = 16, num_classes: int = 10,
                 in_channels: int = 3, preact: bool = False, zero_init_residual: bool = False) -> ResNet:
    """The paper's CIFAR-10 net (sec. 4.2): a 3x3 conv, 3 stages of n basic blocks (widths
    ``width``, 2 ``width``, 4 ``width`` on 32/16/8 maps), pool, fc: ``depth = 6n + 2`` weighted layers.

    ``residual=False`` gives the plain twin (same layers, no adds; ``shortcut`` is then unused).
    """
    if not is_cifar_depth(depth):
        raise ValueError(f"cifar_resnet: depth must be an integer 6n + 2 with n >= 1 (20, 32, 44, 56, 110, 1202), "
                         f"got {depth!r}")
    if not positive_int.holds(width):
        raise ValueError(f"cifar_resnet: width must be a positive integer (16 in the paper), got {width!r}")
    check_shortcut(shortcut)
    n = (depth - 2) // 6
    return ResNet(PreActBlock if preact else BasicBlock, (n, n, n), (width, 2 * width, 4 * width),
                  conv1=conv3x3(in_channels, width), num_classes=num_classes, preact=preact,
                  zero_init_residual=zero_init_residual, input_size=32, residual=residual, shortcut=shortcut)


def imagenet_resnet(depth: int, residual: bool = True, shortcut: str = "B", num_classes: int = 1000,
                    in_channels: int = 3, zero_init_residual: bool = False, stride_in_3x3: bool = False) -> ResNet:
    """The paper's ImageNet nets (Table 1): a 7x7/2 conv and 3x3/2 max pool, 4 stages of widths
    64/128/256/512 (x4 for bottlenecks), pool, fc. ``depth`` is 18, 34 (basic blocks) or 50, 101, 152
    (bottlenecks; ``stride_in_3x3=True`` for the "v1.5" variant). Shortcut B by default, as torchvision.
    """
    if depth not in IMAGENET_CONFIGS:
        raise ValueError(f"imagenet_resnet: depth must be one of {sorted(IMAGENET_CONFIGS)}, got {depth!r}")
    check_shortcut(shortcut)
    block, stage_depths = IMAGENET_CONFIGS[depth]
    options = {"stride_in_3x3": stride_in_3x3} if block is Bottleneck else {}
    return ResNet(block, stage_depths, (64, 128, 256, 512),
                  conv1=Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
                  maxpool=MaxPool2d(3, stride=2, padding=1), num_classes=num_classes,
                  zero_init_residual=zero_init_residual, input_size=224, residual=residual, shortcut=shortcut,
                  **options)
