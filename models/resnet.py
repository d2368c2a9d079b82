"""Scale-invariant pre-activation ResNet-18 with width multiplier k.

The pre-activation ResNet-18 of He et al. (2016) as used by Nakkiran et al. (2020) and
Kodryan et al. (2022): a 3×3 stem convolution with ``k`` channels, four stages of two
:class:`PreActBlock` each with ``k, 2k, 4k, 8k`` channels (strides 1, 2, 2, 2), a final
BatchNorm + ReLU, global average pooling and the fixed linear head (k = 64 is the
standard width). Every BatchNorm is without affine parameters; the downsampling shortcut
is BatchNorm → 1×1 convolution (Li & Arora 2020: "an additional normalization layer in
the shortcut before downsampling"). Convolutions have no bias.

Scale invariance of the whole vector: every block output is homogeneous of degree 1 in
the weights (conv paths and shortcut alike), and the final BatchNorm removes the scale.

Groups (:meth:`ResNet18SI.group_parameters`): the first convolution of every block is
followed by a BatchNorm and is a group of its own. The second convolutions are added to
the residual stream, so they scale only together with everything else that writes into
the stream of their stage: the stem convolution (stage ``layers.0``) or the stage's
downsampling shortcut convolution (stages ``layers.1``-``layers.3``). Each stage's stream
is one group, ``layers.N.stream``; the next stage (or the final BatchNorm) normalises it.

Works on images ``(C, H, W)`` (Conv2d) and 1-D signals ``(C, L)`` (Conv1d).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import ScaleInvariantNet

__all__ = ["PreActBlock", "ResNet18SI"]


class PreActBlock(nn.Module):
    """BN → ReLU → conv3 (stride) → BN → ReLU → conv3, plus the (normalised) shortcut."""

    def __init__(self, net: ScaleInvariantNet, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = net.batch_norm(cin)
        self.conv1 = net.conv_layer(cin, cout, 3, stride=stride, padding=1)
        self.bn2 = net.batch_norm(cout)
        self.conv2 = net.conv_layer(cout, cout, 3, stride=1, padding=1)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(net.batch_norm(cin), net.conv_layer(cin, cout, 1, stride=stride, padding=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class ResNet18SI(ScaleInvariantNet, name="resnet18-si",
                 description="pre-activation ResNet-18, width k (k, 2k, 4k, 8k channels), BN w/o affine, "
                             "BN in the downsampling shortcut"):
    input_ranks = (2, 3)

    def build(self, width: int) -> int:
        c = width
        self.conv1 = self.conv_layer(self.in_channels, c, 3, stride=1, padding=1)
        stages = []
        cin = c
        for i, cout in enumerate((c, 2 * c, 4 * c, 8 * c)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(PreActBlock(self, cin, cout, stride), PreActBlock(self, cout, cout, 1)))
            cin = cout
        self.layers = nn.Sequential(*stages)
        self.bn = self.batch_norm(cin)
        return cin

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.conv1(x))
        return self.global_mean(F.relu(self.bn(out)))

    def group_parameters(self) -> dict[str, list[str]]:
        """Each block's first convolution alone; each stage's residual stream as one group."""
        groups: dict[str, list[str]] = {}
        for i, stage in enumerate(self.layers):
            stream = [f"layers.{i}.stream", ["conv1.weight"] if i == 0 else []]
            for j, block in enumerate(stage):
                prefix = f"layers.{i}.{j}"
                groups[f"{prefix}.conv1"] = [f"{prefix}.conv1.weight"]
                stream[1].append(f"{prefix}.conv2.weight")
                if block.shortcut is not None:
                    stream[1].append(f"{prefix}.shortcut.1.weight")
            groups[stream[0]] = stream[1]
        return groups
