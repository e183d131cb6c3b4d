"""VGG-19 (Simonyan & Zisserman), the paper's Table 1 reference point: 19.6e9 multiply-adds at 224x224.

torchvision's layout and names: ``features`` (3x3 convs with bias, ReLU, 2x2 max pools),
``avgpool`` (adaptive, to 7x7), ``classifier`` (fc 4096 - ReLU - Dropout - fc 4096 - ReLU - Dropout - fc).
"""
from __future__ import annotations

from .. import functional as F
from ..nn import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Linear, MaxPool2d, Module, ReLU, Sequential, init

VGG19_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512, 512, 512, 512, "M")


class VGG(Module):
    """``layers``: conv widths, with ``"M"`` for a 2x2 max pool; ``batch_norm`` adds BN after each conv."""

    def __init__(self, layers=VGG19_LAYERS, num_classes: int = 1000, in_channels: int = 3, batch_norm: bool = False):
        super().__init__()
        self.default_input_shape = (in_channels, 224, 224)
        self.features = Sequential(*_features(layers, in_channels, batch_norm))
        self.avgpool = AdaptiveAvgPool2d(7)
        width = [w for w in layers if w != "M"][-1]
        self.classifier = Sequential(Linear(width * 7 * 7, 4096), ReLU(), Dropout(), Linear(4096, 4096), ReLU(),
                                     Dropout(), Linear(4096, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's: He normal (fan_out) convs, N(0, 0.01) fc weights, zero biases."""
        for module in self.modules():
            if isinstance(module, Conv2d):
                init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if isinstance(module, Linear):
                init.normal_(module.weight, 0.0, 0.01)
            if isinstance(module, (Conv2d, Linear)):
                init.zeros_(module.bias)

    def forward(self, x):
        return self.classifier(F.flatten(self.avgpool(self.features(x)), 1))


def _features(layers, in_channels: int, batch_norm: bool) -> list:
    modules = []
    for width in layers:
        if width == "M":
            modules.append(MaxPool2d(2, stride=2))
            continue
        modules.append(Conv2d(in_channels, width, 3, padding=1))
        modules += [BatchNorm2d(width)] if batch_norm else []
        modules.append(ReLU())
        in_channels = width
    return modules


def vgg19(num_classes: int = 1000, in_channels: int = 3, batch_norm: bool = False) -> VGG:
    return VGG(VGG19_LAYERS, num_classes=num_classes, in_channels=in_channels, batch_norm=batch_norm)
