"""Modules: the containers (``Module``, ``Sequential``), ``Parameter``, the layers, and ``init``.

PyTorch's spelling throughout: ``import minires.nn as nn; nn.Conv2d(3, 16, 3, padding=1, bias=False)``.
"""
from . import functional, init
from .layers import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, Identity,
                     Linear, MaxPool2d, ReLU)
from .module import LayerError, LayerTypeError, Module, Parameter, RemovableHandle, Sequential, shape_only
