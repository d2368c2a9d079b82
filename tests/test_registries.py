"""Registries by subclassing: protocols, isotropic energies, models, equations of state and
checks register with ``class X(Base, name="...")``; the registries are what the command line,
the store reader and the checks look names up in."""

from __future__ import annotations

from typing import ClassVar

import attrs
import pytest

from thermonet.base.registry import Registered
from thermonet.checks import CHECKS, OPTIONAL_CHECKS, Check, get_check
from thermonet.engines.isotropic.energies import Energy, LinearEnergy, get_energy
from thermonet.errors import InputError
from thermonet.models import MODELS, ScaleInvariantNet
from thermonet.theory.eos import EquationOfState, IdealGas, Virial
from thermonet.theory.protocols import FixedELR, FixedLR, FixedSphere, Protocol, get_protocol


def test_builtins_are_registered_under_their_names():
    assert Protocol.registered() == {"fixed-sphere": FixedSphere, "fixed-elr": FixedELR, "fixed-lr": FixedLR}
    assert Energy.get("linear") is LinearEnergy and isinstance(get_energy("linear", 3), LinearEnergy)
    assert EquationOfState.names() == ["ideal", "virial", "van-der-waals", "power-law"]
    assert EquationOfState.get("ideal") is IdealGas
    assert list(CHECKS) == ["vmf-energy", "vmf-entropy", "stationary-radius", "potential-minimum", "maxwell",
                            "adiabat", "thermodynamic-temperature", "group-radius", "group-equipartition"]
    assert set(OPTIONAL_CHECKS) == {"noise-trend", "adiabat-noise-trend"}
    assert {"convnet-si", "resnet18-si", "convnet1d-si", "mlp-si"} <= set(MODELS)
    assert get_protocol("fixed-lr") == FixedLR()


@pytest.mark.parametrize("base", [Protocol, Energy, EquationOfState, Check])
def test_unknown_names_say_what_exists(base):
    with pytest.raises(InputError, match=rf"unknown {base.registry_kind} 'nope'; choose one of "):
        base.get("nope")


def test_a_subclass_with_a_name_registers_and_a_taken_name_is_refused():
    try:
        @attrs.frozen(kw_only=True)
        class Cubic(EquationOfState, name="test-cubic"):
            """P V = N_R T (1 + k/V**3)."""

            from thermonet.theory.eos import parameter

            k: float = parameter(0.0)

            def relation_template(self, gas_constant, params):
                from thermonet.theory.symbols import P, T, V

                return P * V - gas_constant * T * (1 + params["k"] / V**3)

        assert EquationOfState.get("test-cubic") is Cubic
        assert Cubic.parameter_names == ("k",)  # the parameters are the attrs fields
        assert float(Cubic(dim=3, k=0.0).pressure(1.0, 1.0)) == pytest.approx(1.0)
        with pytest.raises(InputError, match="'virial' is already taken"):
            @attrs.frozen(kw_only=True)
            class OtherVirial(EquationOfState, name="virial"):
                def relation_template(self, gas_constant, params):
                    return 0
        assert EquationOfState.get("virial") is Virial
    finally:
        EquationOfState._registry.pop("test-cubic", None)


def test_a_check_registers_and_optional_checks_stay_out_of_the_defaults():
    from thermonet.checks.base import nonnegative_tolerance
    from thermonet.store.synthetic import synthetic_run

    try:
        @attrs.frozen(kw_only=True)
        class RadiusPositive(Check, name="test-radius-positive"):
            description: ClassVar[str] = "every radius is > 0"
            requires: ClassVar[tuple[str, ...]] = ("rho",)
            optional: ClassVar[bool] = True
            tolerance: float = attrs.field(default=0.0, validator=nonnegative_tolerance)

            def _run(self, measured, states):
                worst = float(-states["rho"].min())
                return self._result(passed=worst <= self.tolerance, key="minus_min_rho", numbers={"minus_min_rho": worst},
                                    summary=f"min radius {-worst:.3g}")

        import thermonet.checks as checks

        assert "test-radius-positive" in checks.OPTIONAL_CHECKS and "test-radius-positive" not in checks.CHECKS
        result = get_check("test-radius-positive").run(synthetic_run("fixed-lr"))
        assert result.verdict == "pass" and result.context["protocol"] == "fixed-lr"
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            result.passed = False  # results are not changed after they are built
    finally:
        Check._registry.pop("test-radius-positive", None)


def test_models_and_energies_register_by_subclassing():
    import torch

    try:
        class Tiny(ScaleInvariantNet, name="test-tiny", description="one layer"):
            def build(self, width):
                self.fc = torch.nn.Linear(self.in_channels * self.input_shape[-1], 4 * width, bias=False)
                self.bn = self.batch_norm(4 * width)
                return 4 * width

            def features(self, x):
                return torch.relu(self.bn(self.fc(x.flatten(1))))

        assert MODELS["test-tiny"] is Tiny

        @attrs.frozen
        class Tilted(LinearEnergy, name="test-tilted"):
            pass

        assert Energy.get("test-tilted") is Tilted and Tilted.vmf_stationary
    finally:
        MODELS.pop("test-tiny", None)
        Energy._registry.pop("test-tilted", None)


def test_a_registry_root_is_declared_once():
    class Widget(Registered, registry="widget"):
        pass

    class Gear(Widget, name="gear"):
        pass

    class Unnamed(Widget):
        pass

    assert Widget.registered() == {"gear": Gear} and Widget.get("gear") is Gear
    assert Unnamed.name == "" and Gear.names() == ["gear"]
