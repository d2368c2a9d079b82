"""Concrete scale-invariant networks, importable as ``thermonet.models``.

The folder lives at the repository root (``models/``) and is mapped onto the
``thermonet.models`` package by ``pyproject.toml``, so installing thermonet never puts a
generic top-level ``models`` module into site-packages.
"""
