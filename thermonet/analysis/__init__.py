"""Measurement and analysis (fifth layer): what the measured states of runs say.

* :mod:`.states` -- shared helpers on stationary states (seed means, errors, gradients);
* :mod:`.surface` -- the quadratic entropy surface and its bootstrap;
* :mod:`.power_law` -- the one power-law fit;
* :mod:`.noise` -- temperature from the measured noise, and the noise trend;
* :mod:`.hull`, :mod:`.free_energy` -- temperature from free-energy minimisation (paper 002);
* :mod:`.eos_fit` -- ideal vs real-gas equations of state fitted to measured states;
* :mod:`.processes` -- theory processes followed through measured states;
* :mod:`.systems` -- which theory system a run is compared with;
* :mod:`.sphere_toy` -- the sphere toy's learning-rate sweep;
* :mod:`.entropic` -- entropic forces on the rescaling symmetry of unnormalised ReLU
  networks: the step identities and the relaxation experiment (paper 003).
"""
