"""The protocol base class: how hyperparameters set temperature, pressure and volume.

A protocol is one small class (one file per built-in protocol in this package) that
states, about itself and nothing more:

* ``hyperparameter_specs``: its hyperparameters, in (u, v) order
  (:class:`~thermonet.theory.protocols.hyperparameters.Hyperparameter`: store name, symbol,
  flag); ``natural_variables``: the potential it minimises;
* ``effective_lr()``: the effective learning rate eta_eff, a SymPy expression in its
  hyperparameters and the radius rho; the temperature is ``eta_eff sigma2 / 2``;
* ``pressure_expr()``: the pressure its hyperparameters impose (weight decay), or ``None``
  when it is measured during the run, with ``measured_pressure`` naming the store
  variable that holds the measurement (the fixed sphere's ``lambda_eff``);
* ``expected_next_radius_sq()``: E||w'||**2 after one discrete step from radius rho,
  given ``E||g~||**2 = (trSigma + G1sq) / rho**2`` (the discrete-time picture, THEORY §3);
* ``rescaling``: how each hyperparameter scales when ``w -> a w`` maps training
  trajectories onto each other (THEORY §11), or ``None`` when no such map exists;
* the update rule twice, with the same arithmetic: :meth:`Protocol.step` on a torch batch
  (members x D, any device) and :meth:`Protocol.cpu_step` on one member's numpy row, a
  plain Python function that the isotropic simulator compiles with numba
  (``tests/test_simulation.py`` checks that the two agree for every registered protocol);
* where it starts (:meth:`Protocol.initial_radius`);
* optionally its update in the form ``w' = alpha w - beta g~`` (:meth:`Protocol.update_coefficients`),
  from which the per-group norm recursion follows (:mod:`thermonet.theory.groups`).

Subclassing registers: ``class FixedLR(Protocol, name="fixed-lr")``. Stationary radii,
the discrete-time correction, the Maxwell relation in hyperparameter coordinates, the
adiabats and the noise-trend variable are all derived from those statements by SymPy.
No code outside a protocol's own file asks which protocol it is.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import numpy as np
import sympy as sp

from thermonet.base.registry import Registered
from thermonet.errors import InputError
from thermonet.theory.eos import IdealGas
from thermonet.theory.protocols.hyperparameters import Hyperparameter
from thermonet.theory.symbols import (
    D,
    D_g,
    P,
    T,
    V,
    as_number,
    grad_sq,
    grad_sq_g,
    rho,
    rho_g,
    sigma2,
    sigma2_g,
    step_grad_sq,
    trace_sigma,
    trace_sigma_g,
    volume_of_radius,
)

if TYPE_CHECKING:
    import torch

    from thermonet.theory.eos import EquationOfState


@attrs.frozen
class HyperparameterMaxwellRelation:
    """A Maxwell relation rewritten as a statement about dS/du and dS/dv.

    ``u = ln(first hyperparameter)`` (ln eta, ln eta~ or ln eta), ``v = ln(second)``
    (ln lambda or ln rho_0). The relation reads
    ``coef_u * dS/du + coef_v * dS/dv = rhs``.
    """

    coef_u: sp.Expr
    coef_v: sp.Expr
    rhs: sp.Expr
    u: str
    v: str
    statement: str

    def as_equation(self) -> sp.Eq:
        dSdu, dSdv = sp.symbols("dS_du dS_dv")
        return sp.Eq(self.coef_u * dSdu + self.coef_v * dSdv, self.rhs)

    def __str__(self) -> str:
        return f"{self.statement}  <=>  {sp.sstr(self.as_equation())}  (u = ln {self.u}, v = ln {self.v})"


@attrs.frozen
class Protocol(Registered, abc.ABC, registry="protocol"):
    """A training protocol (THEORY §2); see the module docstring for what a subclass states."""

    #: Its hyperparameters, in (u, v) order.
    hyperparameter_specs: ClassVar[tuple[Hyperparameter, ...]] = ()
    #: Their store dimension names (derived from ``hyperparameter_specs``).
    hyperparameters: ClassVar[tuple[str, ...]] = ()
    #: The natural variables of the potential it minimises: ("T", "P") -> Gibbs, ("T", "V") -> Helmholtz.
    natural_variables: ClassVar[tuple[str, str]]
    #: Store variable holding the measured pressure when ``pressure_expr()`` is None.
    measured_pressure: ClassVar[str | None] = None
    #: ``{hyperparameter: k}``: under ``w -> a w`` the trajectories map onto each other when
    #: each hyperparameter is scaled by ``a**k`` (THEORY §11); None when there is no such map.
    rescaling: ClassVar[Mapping[str, float] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        specs = cls.__dict__.get("hyperparameter_specs")
        if specs is not None:
            cls.hyperparameters = tuple(spec.name for spec in specs)
        super().__init_subclass__(**kwargs)

    @classmethod
    def description(cls) -> str:
        """The first line of the class docstring (for help texts)."""
        return (cls.__doc__ or cls.__name__).strip().splitlines()[0]

    # ----------------------------------------------------------- what a protocol states
    @abc.abstractmethod
    def effective_lr(self) -> sp.Expr:
        """eta_eff in terms of the hyperparameter symbols and ``rho``."""

    @abc.abstractmethod
    def pressure_expr(self) -> sp.Expr | None:
        """Pressure set by the hyperparameters, or ``None`` when it is measured."""

    def fixed_radius(self) -> sp.Expr | None:
        """The radius when the protocol pins it, else ``None``."""
        return None

    @abc.abstractmethod
    def expected_next_radius_sq(self) -> sp.Expr:
        """E||w'||**2 after one step from radius rho (symbols trSigma, G1sq)."""

    @abc.abstractmethod
    def step(self, w: "torch.Tensor", grad: "torch.Tensor", hp: Mapping[str, "torch.Tensor"]) -> "torch.Tensor":
        """One discrete update of a batch of weights ``w`` (members x D).

        ``hp`` maps each hyperparameter name to a tensor broadcastable against ``w``
        (shape ``(members, 1)``).
        """

    def update_coefficients(self) -> tuple[sp.Expr, sp.Expr] | None:
        """``(alpha, beta)`` with ``w' = alpha w - beta g~`` for one step, or ``None``.

        SymPy expressions in the hyperparameters, the radius ``rho`` before the step and
        ``q = ||g~||**2`` (:data:`~thermonet.theory.symbols.step_grad_sq`). Every coordinate of
        the vector is moved by the same two numbers, so each scale-invariant group follows
        ``||w_g'||**2 = alpha**2 ||w_g||**2 + beta**2 ||g~_g||**2`` exactly (``g~_g ⟂ w_g``;
        :class:`thermonet.theory.groups.ProductOfSpheres`). ``None``: the update is not of this
        form, and the per-group recursion is not available.
        """
        return None

    def torch_optimizer(self, params, hp: Mapping[str, float]):
        """A standard ``torch.optim`` optimizer that performs exactly :meth:`step`, or ``None``.

        The eager reference trainer (:mod:`thermonet.engines.network.reference`) uses it,
        so that the ensemble is tested against PyTorch's own implementation where one exists.
        """
        return None

    @staticmethod
    def cpu_step(w, g, hp) -> None:
        """The same update for one member, in place: ``w``, ``g`` of length D, ``hp`` in
        ``hyperparameters`` order. Plain Python with loops over ``w.shape[0]`` (numba
        compiles it into the isotropic simulator's CPU kernel); ``None`` in a subclass
        means the protocol runs with the torch engine only."""
        raise NotImplementedError

    # ----------------------------------------------------------- where it starts
    def initial_radius(self, hp: Mapping[str, np.ndarray], init_radius: float | None) -> np.ndarray | None:
        """Starting radius per member (``hp``: arrays over members), or ``None`` for the engine's default.

        The base class takes ``init_radius`` (a number, or one per member) as given (None:
        the default); a protocol that pins the radius overrides this and refuses it.
        """
        if init_radius is None:
            return None
        shape = np.broadcast_shapes(*(np.shape(np.asarray(hp[n])) for n in self.hyperparameters))
        return np.broadcast_to(np.asarray(init_radius, dtype=float), shape).copy()

    # ----------------------------------------------------------- the measured pressure
    def pressure_series(self, hp: Mapping[str, np.ndarray], mean_grad_norm_sq: np.ndarray) -> np.ndarray:
        """The measured pressure (``measured_pressure``) from the mean ``||g~||**2`` of a log
        interval; only for protocols whose pressure is measured."""
        raise InputError(f"{self.name} sets its pressure by its hyperparameters; it measures none")

    def pressure(self, hp: Mapping[str, np.ndarray], measured: Mapping[str, Any]) -> np.ndarray:
        """Pressure of every member: ``pressure_expr()`` evaluated on ``hp``, or the mean of
        the measured variable in ``measured`` (e.g. window means of a run)."""
        expr = self.pressure_expr()
        if expr is None:
            if self.measured_pressure not in measured:
                raise InputError(f"{self.name} needs the measured {self.measured_pressure}")
            return np.asarray(measured[self.measured_pressure], dtype=float)
        return self.numeric(expr)(hp)

    # ----------------------------------------------------------- the rescaling symmetry
    def noise_trend_expr(self) -> sp.Expr:
        """The combination of hyperparameters the noise level depends on (paper 004 §7.3).

        It is the monomial left invariant by the protocol's ``rescaling`` (THEORY §11):
        eta*lambda under fixed LR, eta~ under fixed ELR, eta/rho_0**2 on the sphere.
        """
        if not self.rescaling:
            raise InputError(f"protocol {self.name!r} declares no rescaling symmetry, so no noise-trend "
                             f"variable is defined for it")
        k1, k2 = (sp.nsimplify(self.rescaling.get(n, 0)) for n in self.hyperparameters)
        h1, h2 = self.symbols.values()
        if k1 == 0:
            return h1
        if k2 == 0:
            return h2
        a, b = k2 / abs(k2), -k1 / abs(k2)  # k1 a + k2 b = 0
        if a < 0:
            a, b = -a, -b
        return sp.powsimp(h1**a * h2**b)

    # ----------------------------------------------------------- derived symbolics
    @property
    def symbols(self) -> dict[str, sp.Symbol]:
        """Hyperparameter name -> SymPy symbol."""
        return {spec.name: spec.symbol for spec in self.hyperparameter_specs}

    def spec(self, name: str) -> Hyperparameter:
        """The declaration of hyperparameter ``name``."""
        for spec in self.hyperparameter_specs:
            if spec.name == name:
                return spec
        raise InputError(f"{self.name} has no hyperparameter {name!r}; it takes {', '.join(self.hyperparameters)}")

    def temperature_expr(self) -> sp.Expr:
        """T = eta_eff sigma2 / 2 (may contain rho)."""
        return self.effective_lr() * sigma2 / 2

    def group_effective_lr(self) -> sp.Expr:
        """eta_eff,g of one scale-invariant group of radius ``rho_g`` in a vector of radius ``rho``.

        The update moves every coordinate by the same multiple ``a`` of the stochastic
        gradient (``a = eta`` at fixed LR and on the sphere, ``eta~ rho**2`` at fixed ELR),
        and a group's gradient scales as ``1/rho_g`` (its own scale invariance), so its
        direction moves with ``a/rho_g**2`` while the whole vector's moves with
        ``a/rho**2 = eta_eff``: ``eta_eff,g = eta_eff rho**2 / rho_g**2``. A protocol that
        preconditions coordinates differently overrides this.
        """
        return self.effective_lr() * rho**2 / rho_g**2

    def group_temperature_expr(self) -> sp.Expr:
        """T_g = eta_eff,g sigma2_g / 2 (in rho, rho_g, sigma2_g and the hyperparameters)."""
        return self.group_effective_lr() * sigma2_g / 2

    def stationary_radius(self, eos: "EquationOfState | None" = None) -> sp.Expr:
        """The stationary radius: the equation of state solved with this protocol's T(rho), P.

        For the ideal gas this reproduces THEORY §3 (the SDE radius).
        """
        fixed = self.fixed_radius()
        if fixed is not None:
            return fixed
        eos = _default_eos(eos)
        relation = eos.relation().subs({T: self.temperature_expr(), P: self.pressure_expr(), V: volume_of_radius(rho)})
        return _unique_positive_root(relation, rho, f"{self.name} stationary radius", self)

    def stationary_radius_discrete(self) -> sp.Expr:
        """Radius at which the expected one-step change of ||w||**2 vanishes (THEORY §3; cached)."""
        return _derive(self, "_derive_radius_discrete", None)

    def _derive_radius_discrete(self, _eos: None = None) -> sp.Expr:
        fixed = self.fixed_radius()
        if fixed is not None:
            return fixed
        balance = self.expected_next_radius_sq() - rho**2
        return _unique_positive_root(balance, rho, f"{self.name} discrete stationary radius", self,
                                     small=self._small_step())

    # ----------------------------------------------------------- one scale-invariant group
    def group_radius_discrete(self) -> sp.Expr:
        """A group's stationary radius from the one-step recursion (mean field; cached).

        With ``w' = alpha w - beta g~`` (:meth:`update_coefficients`) and ``g~_g ⟂ w_g``,
        ``||w_g'||**2 = alpha**2 rho_g**2 + beta**2 ||g~_g||**2`` exactly; setting its
        expectation to ``rho_g**2`` with ``E||g~_g||**2 = (trSigma_g + G1sq_g)/rho_g**2`` and
        ``alpha, beta`` at the whole vector's mean ``q = (trSigma + G1sq)/rho**2`` gives
        ``rho_g**4 = beta**2 (trSigma_g + G1sq_g) / (1 - alpha**2)``. In ``rho_g``'s place
        this is the whole vector's :meth:`stationary_radius_discrete` (THEORY §3, §11).
        """
        return _derive(self, "_derive_group_radius_discrete", None)

    def _derive_group_radius_discrete(self, _eos: None = None) -> sp.Expr:
        coefficients = self.update_coefficients()
        if coefficients is None:
            raise InputError(f"{self.name} does not state its update as w' = alpha w - beta g~ "
                             f"(update_coefficients), so its per-group recursion is unknown")
        mean_q = {step_grad_sq: (trace_sigma + grad_sq) / rho**2}
        fixed = self.fixed_radius()
        on_sphere = {} if fixed is None else {rho: fixed}  # the radius before the step is the pinned one
        alpha2, beta2 = (sp.simplify((c**2).subs(mean_q).subs(on_sphere)) for c in coefficients)
        balance = alpha2 * rho_g**2 + beta2 * (trace_sigma_g + grad_sq_g) / rho_g**2 - rho_g**2
        return _unique_positive_root(balance, rho_g, f"{self.name} group stationary radius", self)

    def group_radius_sde(self, eos: "EquationOfState | None" = None) -> sp.Expr:
        """A group's stationary radius from its own equation of state (ideal gas: P V_g = N_R,g T_g).

        ``T_g`` from :meth:`group_temperature_expr`, ``V_g = rho_g**2/2``, ``N_R,g = (D_g-1)/2``
        and the pressure the groups share: :meth:`pressure_expr`, or the symbol ``P`` where
        the pressure is measured (the sphere's lambda_eff). Contains ``rho`` where the
        protocol couples the groups (fixed ELR: ``eta~ rho**2``). Cached.
        """
        return _derive(self, "_derive_group_radius_sde", _default_eos(eos))

    def _derive_group_radius_sde(self, eos: "EquationOfState") -> sp.Expr:
        if eos.dim is not None:
            raise InputError("group_radius_sde: give the equation of state without a dimension (each group has its own)")
        pressure = self.pressure_expr()
        relation = eos.relation().subs({D: D_g, T: self.group_temperature_expr(), V: volume_of_radius(rho_g),
                                        P: P if pressure is None else pressure})
        return _unique_positive_root(relation, rho_g, f"{self.name} group SDE radius", self)

    def predicted_group_radius_discrete(self, hp: Mapping[str, np.ndarray], radius: np.ndarray,
                                        trace_sigma_: np.ndarray, grad_sq_: np.ndarray,
                                        trace_sigma_group: np.ndarray, grad_sq_group: np.ndarray) -> np.ndarray:
        """Numeric :meth:`group_radius_discrete` from the measured whole radius and noise of the
        whole vector (``trSigma``, ``G1sq`` at its unit norm) and of the group (at the group's)."""
        fn = self.numeric(self.group_radius_discrete(), (rho, trace_sigma, grad_sq, trace_sigma_g, grad_sq_g))
        return fn(hp, radius, trace_sigma_, grad_sq_, trace_sigma_group, grad_sq_group)

    def predicted_group_radius_sde(self, hp: Mapping[str, np.ndarray], radius: np.ndarray,
                                   sigma2_group: np.ndarray, group_dim: np.ndarray,
                                   pressure: np.ndarray | None = None) -> np.ndarray:
        """Numeric :meth:`group_radius_sde`; ``pressure`` is needed where it is measured."""
        fn = self.numeric(self.group_radius_sde(), (rho, sigma2_g, D_g, P))
        if pressure is None:
            if self.pressure_expr() is None:
                raise InputError(f"{self.name} needs the measured {self.measured_pressure} for a group's radius")
            pressure = np.nan
        return fn(hp, radius, sigma2_group, group_dim, pressure)

    def _small_step(self) -> dict[sp.Symbol, sp.Expr]:
        """Substitution that makes the step small, used to pick the SDE-like branch."""
        return {}

    def state(self, eos: "EquationOfState | None" = None) -> dict[str, sp.Expr]:
        """Stationary T, P, V (and rho) in hyperparameter coordinates (derived once, cached)."""
        return dict(_derive(self, "_derive_state", _default_eos(eos)))

    def _derive_state(self, eos: "EquationOfState") -> dict[str, sp.Expr]:
        radius = self.stationary_radius(eos)
        temperature = sp.simplify(self.temperature_expr().subs(rho, radius))
        volume = volume_of_radius(radius)
        pressure = self.pressure_expr()
        if pressure is None:
            pressure = eos.solve_for("P").subs({T: temperature, V: volume})
        return {"T": sp.simplify(temperature), "P": sp.simplify(pressure), "V": sp.simplify(volume), "rho": radius}

    def hyperparameters_of_state(self, eos: "EquationOfState | None" = None) -> dict[str, sp.Expr]:
        """Invert :meth:`state`: hyperparameters as functions of the natural variables."""
        state = self.state(eos)
        unknowns = list(self.symbols.values())
        lhs = [state[name] for name in self.natural_variables]
        targets = [_STATE_SYMBOL[name] for name in self.natural_variables]
        closed = _monomial_system_root(lhs, targets, unknowns)
        if closed is not None:
            solutions = [closed]
        else:
            solutions = sp.solve([sp.Eq(a, b) for a, b in zip(lhs, targets)], unknowns, dict=True)
        good = [s for s in solutions if all(_is_positive_generic(e, self) for e in s.values())]
        if len(good) != 1:
            raise InputError(f"{self.name}: cannot invert the state map uniquely ({len(good)} solutions)")
        return {name: sp.simplify(good[0][sym]) for name, sym in self.symbols.items()}

    def maxwell_relation(self, eos: "EquationOfState | None" = None) -> HyperparameterMaxwellRelation:
        """The protocol's Maxwell relation in (u, v); see :meth:`_derive_maxwell_relation` (cached)."""
        return _derive(self, "_derive_maxwell_relation", _default_eos(eos))

    def _derive_maxwell_relation(self, eos: "EquationOfState") -> HyperparameterMaxwellRelation:
        """The Maxwell relation of the protocol's potential in (u, v) = (ln hp1, ln hp2).

        Gibbs protocols: ``(dS/dP)_T = -(dV/dT)_P``; the left side becomes the derivative
        along the curve of constant T with ``d ln P`` as parameter, expressed through the
        Jacobian of (ln T, ln P) w.r.t. (u, v); the right side comes from the equation of
        state. Helmholtz protocols: ``(dS/dV)_T = (dP/dT)_V``, likewise with (ln T, ln V).
        """
        state = self.state(eos)
        u_sym, v_sym = sp.symbols("u v", real=True)
        hp1, hp2 = self.symbols.values()
        to_log = {hp1: sp.exp(u_sym), hp2: sp.exp(v_sym)}
        second = self.natural_variables[1]
        log_T = sp.log(state["T"].subs(to_log))
        log_X = sp.log(state[second].subs(to_log))
        jac = sp.Matrix([[sp.diff(log_T, u_sym), sp.diff(log_T, v_sym)], [sp.diff(log_X, u_sym), sp.diff(log_X, v_sym)]])
        jac = sp.simplify(jac)
        direction = sp.simplify(jac.inv()[:, 1])  # d(u, v) per unit d ln X at constant ln T
        if second == "P":
            # (dS/d ln P)_T = P (dS/dP)_T = -P (dV/dT)_P
            v_of_tp = eos.solve_for("V")
            rhs = sp.simplify(-P * sp.diff(v_of_tp, T))
            statement = "(dS/dP)_T = -(dV/dT)_P"
        else:
            # (dS/d ln V)_T = V (dS/dV)_T = V (dP/dT)_V
            p_of_tv = eos.solve_for("P")
            rhs = sp.simplify(V * sp.diff(p_of_tv, T))
            statement = "(dS/dV)_T = (dP/dT)_V"
        rhs = sp.simplify(rhs.subs({T: state["T"], P: state["P"], V: state["V"]}))
        names = self.hyperparameters
        return HyperparameterMaxwellRelation(
            coef_u=direction[0], coef_v=direction[1], rhs=rhs, u=names[0], v=names[1], statement=statement
        )

    # ----------------------------------------------------------- numerics
    def temperature(self, hp: Mapping[str, np.ndarray], radius: np.ndarray, sigma2_: np.ndarray) -> np.ndarray:
        """T = eta_eff sigma2 / 2 with a (measured) radius."""
        return self.numeric(self.temperature_expr(), (rho, sigma2))(hp, radius, sigma2_)

    def group_temperature(self, hp: Mapping[str, np.ndarray], radius: np.ndarray, group_radius: np.ndarray,
                          sigma2_group: np.ndarray) -> np.ndarray:
        """T_g = eta_eff,g sigma2_g / 2 with measured whole and group radii (:meth:`group_effective_lr`)."""
        return self.numeric(self.group_temperature_expr(), (rho, rho_g, sigma2_g))(hp, radius, group_radius,
                                                                                   sigma2_group)

    def group_effective_lr_value(self, hp: Mapping[str, np.ndarray], radius: np.ndarray,
                                 group_radius: np.ndarray) -> np.ndarray:
        """eta_eff,g numerically (:meth:`group_effective_lr`)."""
        return self.numeric(self.group_effective_lr(), (rho, rho_g))(hp, radius, group_radius)

    def predicted(self, quantity: str, hp: Mapping[str, np.ndarray], sigma2_: float | np.ndarray, dim: float,
                  eos: "EquationOfState | None" = None) -> np.ndarray:
        """Numeric SDE prediction of ``"T"``, ``"P"``, ``"V"`` or ``"rho"`` on a grid."""
        return self.numeric(self.state(eos)[quantity], (sigma2,), dim=dim)(hp, sigma2_)

    def predicted_radius_discrete(self, hp: Mapping[str, np.ndarray], trace_sigma_: np.ndarray,
                                  grad_sq_: np.ndarray) -> np.ndarray:
        """Numeric discrete-time stationary radius from measured trSigma(x) and G1**2."""
        return self.numeric(self.stationary_radius_discrete(), (trace_sigma, grad_sq))(hp, trace_sigma_, grad_sq_)

    def balance_terms(self) -> dict[int, sp.Expr]:
        """``{k: c_k}`` with ``E||w'||**2 - rho**2 = sum_k c_k rho**(2k)`` (cached).

        The one-step change of the squared radius as a Laurent polynomial in ``rho**2``;
        its coefficients contain the hyperparameters, ``trSigma`` and ``G1sq``. Fixed-radius
        protocols have none (``{}``).
        """
        return dict(_derive(self, "_derive_balance_terms", None))

    def _derive_balance_terms(self, _eos: None = None) -> tuple[tuple[int, sp.Expr], ...]:
        if self.fixed_radius() is not None:
            return ()
        terms = _power_terms(self.expected_next_radius_sq() - rho**2, rho)
        if terms is None or not all((power / 2).is_integer for power in terms):
            raise InputError(f"{self.name}: E||w'||**2 is not a polynomial in rho**2 and 1/rho**2")
        return tuple(sorted((int(power / 2), sp.simplify(coeff)) for power, coeff in terms.items()))

    def predicted_radius_fluctuating(self, hp: Mapping[str, np.ndarray], trace_sigma_: np.ndarray,
                                     grad_sq_: np.ndarray, rel_var: np.ndarray) -> np.ndarray:
        """Mean stationary radius E[rho] with the radius fluctuations kept (THEORY §3, paper app. H).

        The discrete-time radius (:meth:`predicted_radius_discrete`) balances the one-step
        change of ``rho**2`` at one radius. At stationarity it is the *expected* change
        that vanishes, ``sum_k c_k E[rho**(2k)] = 0`` (:meth:`balance_terms`); with
        ``X = E[rho**2]`` and ``v = Var(rho**2)/X**2`` (``rel_var``, measured), to second
        order ``E[rho**(2k)] = X**k (1 + k(k-1)/2 v)`` and ``E[rho] = sqrt(X) (1 - v/8)``.
        The root ``X`` nearest the fluctuation-free one is taken. NaN where an input is.
        """
        fixed = self.fixed_radius()
        shape = np.broadcast_shapes(*(np.shape(np.asarray(hp[n])) for n in self.hyperparameters),
                                    np.shape(trace_sigma_), np.shape(grad_sq_), np.shape(rel_var))
        if fixed is not None:
            return self.numeric(fixed)(hp) * np.ones(shape)
        terms = self.balance_terms()
        coeffs = {k: self.numeric(c, (trace_sigma, grad_sq))(hp, trace_sigma_, grad_sq_) * np.ones(shape)
                  for k, c in terms.items()}
        v = np.asarray(rel_var, dtype=float) * np.ones(shape)
        first = self.predicted_radius_discrete(hp, trace_sigma_, grad_sq_) * np.ones(shape)
        low, high = min(terms), max(terms)
        out = np.full(shape, np.nan)
        for idx in np.ndindex(shape):
            # polynomial in X after multiplying by X**(-low); np.roots wants the highest power first
            poly = [coeffs[k][idx] * (1 + k * (k - 1) / 2 * v[idx]) if k in coeffs else 0.0
                    for k in range(high, low - 1, -1)]
            if not (np.all(np.isfinite(poly)) and np.isfinite(first[idx])):
                continue
            roots = np.roots(poly)
            roots = roots[(np.abs(roots.imag) <= 1e-9 * np.abs(roots)) & (roots.real > 0)].real
            if roots.size:
                x = roots[np.argmin(np.abs(roots - first[idx] ** 2))]
                out[idx] = np.sqrt(x) * (1 - v[idx] / 8)
        return out

    def numeric(self, expr: sp.Expr, extra: tuple[sp.Symbol, ...] = (), dim: float | None = None):
        """``f(hp, *extra_values)``: ``expr`` (in the hyperparameters and ``extra``) as a numpy function.

        ``hp`` maps hyperparameter names to arrays; the result broadcasts over all inputs.
        ``dim`` substitutes a number for the symbol D.
        """
        names = self.hyperparameters
        if dim is not None:
            expr = expr.subs(D, as_number(dim))
        fn = _lambdified((*self.symbols.values(), *extra), expr)

        def evaluate(hp: Mapping[str, np.ndarray], *values: np.ndarray) -> np.ndarray:
            missing = [n for n in names if n not in hp]
            if missing:
                raise InputError(f"{self.name} needs hyperparameters {', '.join(names)}; missing {', '.join(missing)}")
            args = [np.asarray(hp[n], dtype=float) for n in names] + [np.asarray(v, dtype=float) for v in values]
            shape = np.broadcast_shapes(*(a.shape for a in args))
            return np.asarray(fn(*args), dtype=float) * np.ones(shape)

        return evaluate

    def validate(self, hp: Mapping[str, np.ndarray]) -> None:
        """Raise :class:`InputError` for hyperparameters this protocol cannot use."""
        for spec in self.hyperparameter_specs:
            if spec.name not in hp:
                raise InputError(f"{self.name} needs {spec.flag} ({spec.meaning})")
            values = np.asarray(hp[spec.name], dtype=float)
            if values.size == 0:
                raise InputError(f"{self.name}: the {spec.flag} grid is empty")
            if not np.all(np.isfinite(values)) or np.any(values <= 0):
                raise InputError(f"{self.name}: {spec.flag} must be a finite number > 0 ({spec.requirement}); "
                                 f"got {np.nanmin(values):g}")


# ---------------------------------------------------------------------- helpers
def get_protocol(name: str, **kwargs) -> Protocol:
    """Protocol instance by registered name (``fixed-sphere``, ``fixed-elr``, ``fixed-lr``, ...)."""
    return Protocol.get(name)(**kwargs)


@functools.lru_cache(maxsize=512)
def _lambdified(arguments: tuple[sp.Symbol, ...], expr: sp.Expr):
    """``sp.lambdify`` once per (arguments, expression): it takes milliseconds, and engines
    evaluate the same expressions at every log step."""
    return sp.lambdify(list(arguments), expr, "numpy")


@functools.lru_cache(maxsize=256)
def _derive(protocol: Protocol, method: str, eos: "EquationOfState | None"):
    """SymPy derivations are slow: each (protocol, derivation, equation of state) runs once."""
    return getattr(protocol, method)(eos)


_STATE_SYMBOL = {"T": T, "P": P, "V": V}
_GENERIC = {D: 7, sigma2: sp.Rational(13, 10), trace_sigma: sp.Rational(17, 10), grad_sq: sp.Rational(3, 10),
            T: sp.Rational(1, 30), P: sp.Rational(1, 70), V: sp.Rational(9, 10),
            rho: sp.Rational(6, 5), D_g: 5, sigma2_g: sp.Rational(11, 10), trace_sigma_g: sp.Rational(7, 5),
            grad_sq_g: sp.Rational(1, 5), step_grad_sq: sp.Rational(2, 3)}


def _default_eos(eos: "EquationOfState | None") -> "EquationOfState":
    return IdealGas() if eos is None else eos


def _generic_point(protocol: Protocol) -> dict[sp.Symbol, sp.Expr]:
    """A generic positive point: the state symbols and the protocol's hyperparameters."""
    point = dict(_GENERIC)
    for i, sym in enumerate(protocol.symbols.values()):
        point[sym] = sp.Rational(3 + 2 * i, 200)
    return point


def _is_positive_generic(expr: sp.Expr, protocol: Protocol) -> bool:
    value = complex(sp.N(expr.subs(_generic_point(protocol))))
    return abs(value.imag) < 1e-12 and value.real > 0


def _unique_positive_root(equation: sp.Expr, unknown: sp.Symbol, what: str, protocol: Protocol,
                          small: dict[sp.Symbol, sp.Expr] | None = None) -> sp.Expr:
    """The root of ``equation`` in ``unknown`` that is real and positive.

    When several are, ``small`` (a substitution making the step small) picks the one
    that stays finite in the small-step limit, i.e. the branch continuous with the SDE.
    """
    closed = _two_power_root(equation, unknown)
    roots = [closed] if closed is not None else [r for r in sp.solve(equation, unknown) if not r.has(sp.I)]
    good = [r for r in roots if _is_positive_generic(r, protocol)]
    if len(good) > 1 and small:
        point = _generic_point(protocol)
        point.update(small)
        finite = []
        for r in good:
            value = complex(sp.N(r.subs(point)))
            if np.isfinite(value.real) and abs(value.real) < 1e3:
                finite.append(r)
        good = finite
    if len(good) != 1:
        raise InputError(f"{what}: expected one positive root, found {len(good)}")
    return sp.simplify(good[0])


def _power_terms(expr: sp.Expr, unknown: sp.Symbol) -> dict[sp.Expr, sp.Expr] | None:
    """``{p: c_p}`` with ``expr = sum_p c_p unknown**p`` (terms of equal power summed), or
    ``None`` when a term is not a coefficient times a power of ``unknown``."""
    expanded = sp.powsimp(sp.expand(sp.expand_power_base(expr, force=True)), force=True)
    terms: dict[sp.Expr, sp.Expr] = {}
    for term in sp.Add.make_args(expanded):
        monomial = _monomial(term, [unknown])
        if monomial is None:
            return None
        coeff, (power,) = monomial
        same = next((p for p in terms if sp.simplify(p - power) == 0), power)
        terms[same] = terms.get(same, sp.S.Zero) + coeff
    return terms


def _two_power_root(equation: sp.Expr, unknown: sp.Symbol) -> sp.Expr | None:
    """The positive root of ``a·x**p + b·x**q = 0`` in closed form, or ``None`` for other shapes.

    Stationary radii of power-law equations of state have this shape with exponents such
    as ``-2 - 2α``; ``sp.solve`` turns a rational α = m/n into a polynomial of degree ~n
    and can take minutes, while the root is ``(-b/a)**(1/(p - q))`` (all symbols positive).
    """
    terms = _power_terms(equation, unknown)
    if terms is None or len(terms) != 2:
        return None
    (p, a), (q, b) = terms.items()
    return sp.powsimp((-sp.factor(b) / sp.factor(a)) ** (1 / (p - q)), force=True)


def _monomial(expr: sp.Expr, unknowns: list[sp.Symbol]) -> tuple[sp.Expr, list[sp.Expr]] | None:
    """``(c, [a_1, ...])`` with ``expr = c · Π u_j**a_j``, or ``None`` if it is not such a monomial."""
    expr = sp.powsimp(sp.expand_power_base(expr, force=True), force=True)
    coeff, part = expr.as_independent(*unknowns, as_Add=False)
    powers = part.as_powers_dict() if part != 1 else {}
    if set(powers) - set(unknowns) or any(e.has(*unknowns) for e in powers.values()):
        return None
    return coeff, [sp.S(powers.get(u, 0)) for u in unknowns]


def _monomial_system_root(lhs: list[sp.Expr], targets: list[sp.Symbol],
                          unknowns: list[sp.Symbol]) -> dict[sp.Symbol, sp.Expr] | None:
    """Solve ``lhs_i(unknowns) = targets_i`` when every ``lhs_i`` is a monomial (else ``None``).

    In logarithms the system is linear, ``A · ln u = ln(target / c)``, so the solution is
    ``u_j = Π (target_i / c_i)**(A⁻¹)_ji`` for positive symbols; ``sp.solve`` on the same
    system with non-integer exponents can run for minutes.
    """
    monomials = [_monomial(e, unknowns) for e in lhs]
    if any(m is None for m in monomials) or len(lhs) != len(unknowns):
        return None
    exponents = sp.Matrix([m[1] for m in monomials])
    if sp.simplify(exponents.det()) == 0:
        return None
    inverse = exponents.inv()
    return {u: sp.powsimp(sp.Mul(*[(t / m[0]) ** sp.simplify(inverse[j, i])
                                   for i, (t, m) in enumerate(zip(targets, monomials))]), force=True)
            for j, u in enumerate(unknowns)}
