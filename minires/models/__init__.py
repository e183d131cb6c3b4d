"""The paper's model families, by name: ``get_model("resnet56")``, ``list_models()``.

* CIFAR-10 (sec. 4.2): ``resnet20/32/44/56/110/1202`` and their plain twins ``plain20/32/44/56/110``,
  built by :func:`cifar_resnet` (options: ``shortcut="A"|"B"|"C"``, ``preact``, ``width``, ...).
* ImageNet (Table 1): ``resnet18/34/50/101/152``, ``plain18/34`` (:func:`imagenet_resnet`), ``vgg19``.

Every constructor takes ``num_classes`` and ``in_channels``; keyword arguments pass through.
"""
from __future__ import annotations

from .blocks import BasicBlock, Block, Bottleneck, PreActBlock, ZeroPadShortcut, make_shortcut
from .resnet import ResNet, cifar_resnet, imagenet_resnet, is_cifar_depth
from .vgg import VGG, vgg19


def _named(builder, depth: int, residual: bool):
    kind = "ResNet" if residual else "plain net"
    family = "CIFAR-10" if builder is cifar_resnet else "ImageNet"

    def make(**kwargs):
        return builder(depth, residual=residual, **kwargs)

    make.__name__ = make.__qualname__ = f"{'resnet' if residual else 'plain'}{depth}"
    make.__doc__ = f"The {depth}-layer {family} {kind}: ``{builder.__name__}({depth}, residual={residual}, **kwargs)``."
    return make


resnet20, resnet32, resnet44, resnet56, resnet110, resnet1202 = (
    _named(cifar_resnet, d, True) for d in (20, 32, 44, 56, 110, 1202))
plain20, plain32, plain44, plain56, plain110 = (_named(cifar_resnet, d, False) for d in (20, 32, 44, 56, 110))
resnet18, resnet34, resnet50, resnet101, resnet152 = (_named(imagenet_resnet, d, True) for d in (18, 34, 50, 101, 152))
plain18, plain34 = (_named(imagenet_resnet, d, False) for d in (18, 34))

_MODELS = {fn.__name__: fn for fn in (
    resnet20, resnet32, resnet44, resnet56, resnet110, resnet1202, plain20, plain32, plain44, plain56, plain110,
    resnet18, resnet34, resnet50, resnet101, resnet152, plain18, plain34, vgg19)}


CIFAR_RESNETS = tuple(fn.__name__ for fn in (resnet20, resnet32, resnet44, resnet56, resnet110, resnet1202))


def list_models() -> list[str]:
    """The names :func:`get_model` knows."""
    return list(_MODELS)


def get_model(name: str, **kwargs):
    """Build the model called ``name`` (see :func:`list_models`); ``kwargs`` go to its constructor."""
    if name not in _MODELS:
        raise ValueError(f"get_model: unknown model {name!r}; known models: {', '.join(_MODELS)}")
    return _MODELS[name](**kwargs)
