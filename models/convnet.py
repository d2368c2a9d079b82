"""Scale-invariant ConvNet in the style of Kodryan et al. (2022).

Four bias-free 3×3 convolutions with widths ``k, 2k, 4k, 8k`` (``k`` = ``--width``), each
followed by BatchNorm without affine parameters and ReLU; 2× max-pooling after layers 2,
3 and 4; a global max-pool (the ``MaxPool(4)`` of the original on 32×32 inputs) and the
fixed linear head. Works on images ``(C, H, W)`` with Conv2d and on 1-D signals
``(C, L)`` (e.g. MNIST-1D) with Conv1d; the spatial size must be at least 8.

Trained parameters for CIFAR (C = 3): ``D = 9·(3k + 2k² + 8k² + 32k²) = 27k + 378k²``
(k = 8: 24,408). For MNIST-1D (C = 1, kernel 3): ``D = 3·(k + 42k²)`` (k = 8: 8,088).
"""

from __future__ import annotations

import torch

from .registry import ScaleInvariantNet

__all__ = ["ConvNetSI"]


class ConvNetSI(ScaleInvariantNet, name="convnet-si",
                description="Kodryan et al. 2022 ConvNet: 4 conv3 layers (k, 2k, 4k, 8k), BN w/o affine, max-pool; "
                            "1-D or 2-D inputs"):
    input_ranks = (2, 3)

    def build(self, width: int) -> int:
        if min(self.input_shape[1:]) < 8:
            from thermonet.errors import InputError

            raise InputError(f"convnet-si needs spatial size >= 8 (three 2x poolings), got {self.input_shape}")
        widths = [width, 2 * width, 4 * width, 8 * width]
        layers = []
        cin = self.in_channels
        for i, cout in enumerate(widths):
            layers += [self.conv_layer(cin, cout, 3), self.batch_norm(cout), torch.nn.ReLU()]
            if i > 0:
                layers.append(self.max_pool(2))
            cin = cout
        self.conv_layers = torch.nn.Sequential(*layers)
        return widths[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.global_max(self.conv_layers(x))
