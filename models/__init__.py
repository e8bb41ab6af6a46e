"""Architectures for 32x32-class images plus timm by name, and the helpers defenses rely on.

Every model takes ``num_classes`` and a ``width`` multiplier (CPU settings use narrow models),
creates one activation module per use (so defenses can hook each activation layer), and is wrapped
by ``Normalized`` so that attacks and defenses see images in [0, 1].
"""

from models._features import capture, stage_ends
from models._head import classifier_head, head_features
from models._layers import act_class, activation_layers, make_act
from models._normalize import Normalized

__all__ = [
    "Normalized",
    "act_class",
    "activation_layers",
    "capture",
    "classifier_head",
    "head_features",
    "make_act",
    "stage_ends",
]
