"""Small scale-invariant networks for MNIST-1D (inputs ``(1, 40)``) and other 1-D data.

``convnet1d-si``
    Three bias-free 1-D convolutions (kernel 5, 3, 3; stride 2 each; widths ``2k, 2k,
    2k``), each followed by BatchNorm without affine parameters and ReLU, then the
    flattened feature map into the fixed head. The layout follows the reference CNN of
    the MNIST-1D paper (Greydanus 2020), made scale-invariant.
``mlp-si``
    Flatten, then two hidden layers of ``16k`` units (bias-free linear → BatchNorm
    without affine → ReLU), then the fixed head. Takes inputs of any shape.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .registry import ScaleInvariantNet

__all__ = ["ConvNet1dSI", "MLPSI"]


class ConvNet1dSI(ScaleInvariantNet, name="convnet1d-si",
                  description="MNIST-1D CNN: 3 conv1d layers (2k channels, stride 2), BN w/o affine, flatten"):
    input_ranks = (2,)

    def build(self, width: int) -> int:
        c = 2 * width
        length = self.input_shape[1]
        layers = []
        cin = self.in_channels
        for kernel in (5, 3, 3):
            pad = 1
            layers += [nn.Conv1d(cin, c, kernel, stride=2, padding=pad, bias=False), self.batch_norm(c), nn.ReLU()]
            length = (length + 2 * pad - kernel) // 2 + 1
            if length < 1:
                from thermonet.errors import InputError

                raise InputError(f"convnet1d-si: input length {self.input_shape[1]} is too short for 3 stride-2 convs")
            cin = c
        self.conv_layers = nn.Sequential(*layers)
        return c * length

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_layers(x).flatten(1)


class MLPSI(ScaleInvariantNet, name="mlp-si",
            description="MLP: flatten, 2 hidden layers of 16k units (linear w/o bias, BN w/o affine, ReLU)"):
    input_ranks = (1, 2, 3)

    def build(self, width: int) -> int:
        hidden = 16 * width
        n_in = math.prod(self.input_shape)
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(n_in, hidden, bias=False), nn.BatchNorm1d(hidden, eps=self.bn_eps, affine=False,
                                                                track_running_stats=False), nn.ReLU(),
            nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden, eps=self.bn_eps, affine=False,
                                                                  track_running_stats=False), nn.ReLU(),
        )
        return hidden

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
