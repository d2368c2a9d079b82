"""Which theory a measured run is compared with.

* :func:`exact_vmf_applies` -- whether the run is the isotropic test system with an
  energy whose stationary direction is exactly von Mises-Fisher (the exact-vMF checks
  apply); :func:`vmf_energies` names those energies;
* :func:`default_system` -- the :class:`~thermonet.theory.system.ThermodynamicSystem` a
  run's measured states are compared with (adiabats, processes).
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from thermonet.analysis.states import seed_mean
from thermonet.store.measured import measured_kind

__all__ = ["default_system", "exact_vmf_applies", "vmf_energies"]

#: What synthetic runs built from the exact vMF theory call their energy.
SYNTHETIC_VMF = "vmf"


def vmf_energies() -> list[str]:
    """Names of the energies whose stationary direction is vMF(-mu, 1/T) (THEORY §7), and ``vmf``."""
    from thermonet.engines.isotropic.energies import Energy

    return [name for name, cls in Energy.registered().items() if cls.vmf_stationary] + [SYNTHETIC_VMF]


def exact_vmf_applies(measured: object) -> bool:
    """True for isotropic runs of an energy with exact vMF statistics (or no energy named)."""
    energy = getattr(measured, "energy", None)
    return measured_kind(measured) == "isotropic" and (energy is None or str(energy) in vmf_energies())


def default_system(measured, states: xr.Dataset):
    """The theory system a run is compared with.

    Isotropic runs of a vMF energy: :class:`IsotropicNoiseSystem` with the exact vMF
    energy and the measured noise level. Otherwise (networks, other simulated energies):
    ideal gas with a constant heat capacity fitted to the measured U(T) (least squares
    over the grid, seed means); when that slope is not positive, N_R = (D-1)/2 (the
    high-concentration value).
    """
    from thermonet.theory.energy import ConstantHeatCapacity
    from thermonet.theory.eos import IdealGas
    from thermonet.theory.system import IsotropicNoiseSystem, ThermodynamicSystem

    sm = seed_mean(states)
    sig2 = float(np.nanmean(sm["sigma2"].values)) if "sigma2" in sm else 1.0
    if not (math.isfinite(sig2) and sig2 > 0):
        sig2 = 1.0
    dim = measured.dim
    if exact_vmf_applies(measured):
        return IsotropicNoiseSystem.create(measured.protocol, dim, math.sqrt(sig2))
    T = sm["T"].values.ravel()
    U = sm["U"].values.ravel()
    good = np.isfinite(T) & np.isfinite(U)
    c_v = (dim - 1) / 2
    if good.sum() >= 2 and np.ptp(T[good]) > 0:
        slope = float(np.polyfit(T[good], U[good], 1)[0])
        if math.isfinite(slope) and slope > 0:
            c_v = slope
    return ThermodynamicSystem(protocol=measured.protocol, eos=IdealGas(dim=dim),
                               energy=ConstantHeatCapacity(dim=dim, c_v=c_v), dim=dim, sigma2=sig2)


