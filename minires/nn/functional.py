"""``minires.nn.functional``: the ops of :mod:`minires.functional` under PyTorch's module name.

``import minires.nn.functional as F`` then ``F.conv2d``, ``F.batch_norm``, ``F.cross_entropy``, ...
"""
from ..functional import *  # noqa: F401,F403 - a re-export, by design
