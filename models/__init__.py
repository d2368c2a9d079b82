"""Concrete scale-invariant networks, importable as ``thermonet.models``.

The folder lives at the repository root (``models/``) and is mapped onto the
``thermonet.models`` package by ``pyproject.toml``, so installing thermonet never puts a
generic top-level ``models`` module into site-packages.

Registered models (``thermonet train --model NAME --width K``):

========================  ==============================================================
``convnet-si``            Kodryan et al. 2022 ConvNet (k, 2k, 4k, 8k), 1-D or 2-D inputs
``resnet18-si``           pre-activation ResNet-18 of width k, 1-D or 2-D inputs
``convnet1d-si``          MNIST-1D CNN (3 stride-2 conv1d layers of 2k channels)
``mlp-si``                MLP with two hidden layers of 16k units
========================  ==============================================================

All are fully scale-invariant (bias-free layers, BatchNorm without affine parameters and
without running statistics) and end in a fixed, untrained linear head of norm 10. Add a
model by subclassing :class:`ScaleInvariantNet` with ``name=...`` (or decorating it with
:func:`register_model`); see :mod:`thermonet.models.registry`.
"""

# importing the model modules registers their classes
from . import registry
from .convnet import ConvNetSI
from .mnist1d_nets import MLPSI, ConvNet1dSI
from .registry import *  # noqa: F403 - the registry's public names, listed once in registry.__all__
from .resnet import ResNet18SI

__all__ = ["ConvNet1dSI", "ConvNetSI", "MLPSI", "ResNet18SI", *registry.__all__]
