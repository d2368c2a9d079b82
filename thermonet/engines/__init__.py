"""Engines: what advances an ensemble and measures it (second layer, after the theory).

* :mod:`.common`: the engine interface the run driver uses, the time axis, members;
* :mod:`.rng`: counter-based random numbers (per member, per step);
* :mod:`.isotropic`: the isotropic test system (numba kernel, torch engine, energies);
* :mod:`.network`: ensembles of scale-invariant networks (``thermonet.models``), datasets;
* :mod:`.toy`: the 3-D sphere toy of paper 002 (mini-batch noise).
"""
