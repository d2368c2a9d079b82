"""The foundation every layer may use: options, registries, validation, grids, JSON, plotting helpers.

Nothing here knows about physics, engines or stores; it imports only the standard
library, numpy, attrs and :mod:`thermonet.errors` (matplotlib lazily).
"""
