"""``thermonet theory``: the ideal-gas predictions of one protocol, symbolic and numeric."""

from __future__ import annotations

import argparse

from thermonet.errors import InputError

#: The largest D the symbolic evaluation is asked for (the vMF formulas are tested to 1e6).
MAX_DIM = 1e9


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from thermonet.runs.options import hyperparameter_flags
    from thermonet.theory.protocols import Protocol

    parser = sub.add_parser(
        "theory",
        help="print the theory of one protocol (T, P, V, radius, Maxwell relation, gamma)",
        description=(
            "Derive, with SymPy, the stationary state of the isotropic-noise model under one "
            "training protocol and evaluate it at the given hyperparameters."
        ),
    )
    parser.add_argument("--protocol", required=True, help=f"one of: {', '.join(Protocol.names())}")
    parser.add_argument("--dim", default="3", help="number of scale-invariant parameters D (default 3)")
    parser.add_argument("--sigma", default="1", help="noise level sigma at unit norm (default 1)")
    typical = _typical_values()
    for name, (flag, meaning) in hyperparameter_flags().items():
        parser.add_argument(flag, default=None, dest=f"grid_{name}",
                            help=f"{meaning.split(': ')[0]}; one value (default {typical[name]:g})")
    parser.set_defaults(run=run)
    return parser


def _typical_values() -> dict[str, float]:
    from thermonet.theory.protocols import Protocol

    return {spec.name: spec.typical for cls in Protocol.registered().values() for spec in cls.hyperparameter_specs}


def run(args: argparse.Namespace) -> int:
    from thermonet.base.options import number
    from thermonet.theory.protocols import get_protocol

    protocol = get_protocol(args.protocol)
    typical = _typical_values()
    given = {name: getattr(args, f"grid_{name}") for name in typical if getattr(args, f"grid_{name}") is not None}
    unused = [n for n in given if n not in protocol.hyperparameters]
    if unused:
        flags = ", ".join("--" + u.replace("_", "-") for u in unused)
        raise InputError(f"{protocol.name} does not use {flags}; it takes "
                         f"{', '.join(s.flag for s in protocol.hyperparameter_specs)}")
    dim = number(minimum=2)(args.dim, "--dim")
    if dim > MAX_DIM:
        raise InputError(f"--dim must be at most {MAX_DIM:g}, got {args.dim}")
    sigma = number(positive=True)(args.sigma, "--sigma")
    hp = {spec.name: number()(given[spec.name], spec.flag) if spec.name in given else spec.typical
          for spec in protocol.hyperparameter_specs}
    protocol.validate(hp)  # says why a value must be > 0
    print(summary(protocol.name, hp, dim=dim, sigma=sigma))
    return 0


def summary(protocol_name: str, hp: dict[str, float], dim: float, sigma: float) -> str:
    """The text ``thermonet theory`` prints."""
    import numpy as np
    import sympy as sp

    from thermonet.theory.symbols import D
    from thermonet.theory.system import IsotropicNoiseSystem

    system = IsotropicNoiseSystem.create(protocol_name, dim=dim, sigma=sigma)
    hc = IsotropicNoiseSystem.create(protocol_name, dim=dim, sigma=sigma, high_concentration=True)
    protocol = system.protocol
    state = protocol.state(system.eos)
    grid = {k: np.array(v) for k, v in hp.items()}
    values = system.predict(grid).squeeze(drop=True)
    lines = [
        f"protocol {protocol.name}: D = {dim:g}, sigma = {sigma:g}, "
        + ", ".join(f"{k} = {v:g}" for k, v in hp.items()),
        f"  potential minimised: {'Gibbs G(T, P)' if protocol.natural_variables == ('T', 'P') else 'Helmholtz F(T, V)'}",
        "",
        f"  {'quantity':<22}{'formula (SDE, ideal gas)':<52}value",
    ]
    rows = [("temperature T", state["T"], "T"), ("pressure P", state["P"], "P"), ("volume V = rho^2/2", state["V"], "V"),
            ("stationary radius rho", state["rho"], "rho")]
    for label, expr, key in rows:
        lines.append(f"  {label:<22}{sp.sstr(expr):<52}{float(values[key]):.6g}")
    lines.append(f"  {'discrete-time radius':<22}{sp.sstr(protocol.stationary_radius_discrete())}"
                 "   [uses measured trSigma, G1sq]")
    kappa = 1 / float(values["T"])
    lines += [
        "",
        f"  mean loss U (exact vMF, kappa = 1/T = {kappa:.4g}): {float(values['U']):.6g}",
        f"  entropy on the unit sphere S1 (nats): {float(values['S_sphere']):.6g};"
        f" total S = S1 + (D-1) ln rho: {float(values['S']):.6g}",
        "",
        f"  Maxwell relation: {protocol.maxwell_relation(system.eos)}".replace("D/2 - 1/2", f"{(dim - 1) / 2:g}"),
    ]
    caps = system.heat_capacities()
    t, v = float(values["T"]), float(values["V"])
    c_v = float(system.energy.heat_capacity(np.array(t)))
    c_p = c_v + float(sp.N((caps["C_P"] - caps["C_V"]).subs({D: dim, sp.Symbol("T", positive=True): t,
                                                               sp.Symbol("V", positive=True): v})))
    hc_caps = hc.heat_capacities()
    lines += [
        f"  heat capacities at this T: C_V = {c_v:.6g}, C_P = {c_p:.6g}, gamma = {c_p / c_v:.6g}"
        f"   (high concentration: gamma = {sp.sstr(sp.simplify(hc_caps['gamma'].subs(D, dim)))})",
    ]
    adiabat = hc.adiabat()
    if "invariant" in adiabat:
        inv = sp.sstr(adiabat["invariant"])
        lines.append(f"  adiabat (S constant, high concentration): {inv} = const")
    return "\n".join(lines)
