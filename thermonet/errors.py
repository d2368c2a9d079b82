"""Exceptions that carry a message meant for a person.

Everything thermonet raises on bad input derives from :class:`ThermonetError`; the
command line prints its message on one line and exits with status 2.
"""

from __future__ import annotations


class ThermonetError(Exception):
    """Base class: a problem a user can fix, described in one sentence."""


class InputError(ThermonetError, ValueError):
    """A value given by the user is outside what is allowed."""


class StoreError(ThermonetError):
    """A run store is missing, not a thermonet run, or inconsistent."""


class RunError(ThermonetError):
    """A run could not finish (a shard failed); its store keeps what was done and ``--resume`` continues it."""
