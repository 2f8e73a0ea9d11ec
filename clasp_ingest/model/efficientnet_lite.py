"""EfficientNet-Lite0 in plain torch, with timm's parameter names.

clasp-mini's spectrogram branch needs only this one network. Building it with timm costs
about 2 s of imports on 2 cores (timm pulls in ``torchvision.models`` and ``torch._dynamo``),
most of a model load; this module builds the same network (``tf_efficientnet_lite0``: TF
"same" padding for strided convolutions, BatchNorm eps 1e-3, ReLU6, no squeeze-excitation) in
a few milliseconds. Its ``state_dict`` keys and shapes are timm's, and its features equal
timm's (tests/unit/model_mini/test_lite0.py checks both).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LITE0_ARCHS", "LITE0_STAGES", "EfficientNetLite"]

#: timm architecture name → whether it is the TensorFlow variant (``tf_same``).
LITE0_ARCHS = {"tf_efficientnet_lite0": True, "efficientnet_lite0": False}

#: (repeats, kernel, stride, expansion, output channels) of the seven stages of Lite0.
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_STEM = 32
_HEAD = 1280


class _Conv(nn.Conv2d):
    """A bias-free convolution padded like TensorFlow's "same" (``tf_same``) or symmetrically."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, *, tf_same: bool
    ) -> None:
        self._dynamic = tf_same and stride > 1
        padding = 0 if self._dynamic else (kernel - 1) // 2
        super().__init__(cin, cout, kernel, stride, padding=padding, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dynamic:
            x = F.pad(x, _same_padding(x.shape[-2:], self.kernel_size[0], self.stride[0]))
        return super().forward(x)


def _same_padding(size: tuple[int, ...] | torch.Size, kernel: int, stride: int) -> tuple[int, int, int, int]:
    pads = []
    for length in (size[1], size[0]):  # F.pad wants (left, right, top, bottom)
        total = max((math.ceil(length / stride) - 1) * stride + kernel - length, 0)
        pads += [total // 2, total - total // 2]
    return pads[0], pads[1], pads[2], pads[3]


def _bn(channels: int, tf_same: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3 if tf_same else 1e-5)  # TensorFlow's eps, or torch's


class _DepthwiseSeparable(nn.Module):
    """Stage 1 (expansion 1): depthwise conv, BN, ReLU6, pointwise conv, BN (+ residual)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, *, tf_same: bool) -> None:
        super().__init__()
        self.conv_dw = _Conv(cin, cin, kernel, stride, groups=cin, tf_same=tf_same)
        self.bn1 = _bn(cin, tf_same)
        self.conv_pw = _Conv(cin, cout, 1, tf_same=tf_same)
        self.bn2 = _bn(cout, tf_same)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv_pw(F.relu6(self.bn1(self.conv_dw(x)))))
        return out + x if self.residual else out


class _InvertedResidual(nn.Module):
    """MBConv without squeeze-excitation: expand, depthwise, project (+ residual)."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, expansion: int, *, tf_same: bool
    ) -> None:
        super().__init__()
        mid = cin * expansion
        self.conv_pw = _Conv(cin, mid, 1, tf_same=tf_same)
        self.bn1 = _bn(mid, tf_same)
        self.conv_dw = _Conv(mid, mid, kernel, stride, groups=mid, tf_same=tf_same)
        self.bn2 = _bn(mid, tf_same)
        self.conv_pwl = _Conv(mid, cout, 1, tf_same=tf_same)
        self.bn3 = _bn(cout, tf_same)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self.bn1(self.conv_pw(x)))
        out = self.bn3(self.conv_pwl(F.relu6(self.bn2(self.conv_dw(out)))))
        return out + x if self.residual else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0; ``num_classes=0`` returns the pooled 1280-d features.

    ``tf_same=True`` is timm's ``tf_efficientnet_lite0`` (TensorFlow-trained weights: "same"
    padding, BatchNorm eps 1e-3), ``False`` its ``efficientnet_lite0`` (symmetric padding,
    eps 1e-5).
    """

    num_features = _HEAD

    def __init__(self, num_classes: int = 0, *, tf_same: bool = True) -> None:
        super().__init__()
        self.conv_stem = _Conv(3, _STEM, 3, 2, tf_same=tf_same)
        self.bn1 = _bn(_STEM, tf_same)
        stages: list[nn.Sequential] = []
        cin = _STEM
        for repeats, kernel, stride, expansion, cout in LITE0_STAGES:
            blocks: list[nn.Module] = []
            for i in range(repeats):
                step = stride if i == 0 else 1
                if expansion == 1:
                    blocks.append(_DepthwiseSeparable(cin, cout, kernel, step, tf_same=tf_same))
                else:
                    blocks.append(_InvertedResidual(cin, cout, kernel, step, expansion, tf_same=tf_same))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = _Conv(cin, _HEAD, 1, tf_same=tf_same)
        self.bn2 = _bn(_HEAD, tf_same)
        self.classifier: nn.Module = nn.Linear(_HEAD, num_classes) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.bn1(self.conv_stem(x)))
        x = F.relu6(self.bn2(self.conv_head(self.blocks(x))))
        return self.classifier(x.mean(dim=(2, 3)))
