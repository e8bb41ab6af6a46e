"""Architectures for 32x32-class images plus timm by name.

Every model takes ``num_classes`` and a ``width`` multiplier (CPU settings use narrow models),
creates one activation module per use (so defenses can hook each activation layer), and is wrapped
by ``Normalized`` so that attacks and defenses see images in [0, 1]. What attacks and defenses read
from a network (activation layers, stage ends, the classifier head) is in ``bench.core.network``.
"""

from bench.models._layers import make_act
from bench.models._normalize import Normalized

__all__ = ["Normalized", "make_act"]
