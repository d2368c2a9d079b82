"""Options declared once (thermonet.base.options): the flag, the validation with its message,
the store attribute and the --resume rule all come from one field declaration."""

from __future__ import annotations

import argparse
import warnings

import attrs
import numpy as np
import pytest

import thermonet
from thermonet.base.options import OptionSet, add_arguments, choice, given_options, integer, number, option
from thermonet.errors import InputError, StoreError
from thermonet.runs import simulate
from thermonet.runs.options import IsotropicSettings, TrainSettings


@attrs.frozen(kw_only=True)
class Toy(OptionSet):
    size: int = option(4, flag="--size", parse=integer(minimum=2), help="how many")
    speed: float = option(1.0, flag="--speed", parse=number(positive=True), resume="free", help="how fast")
    mode: str = option("a", flag="--mode", parse=choice("a", "b"), help="which")
    secret: int = option(0, flag=None, parse=integer(), store=False, help="not on the command line")
    fast: bool = option(False, flag="--fast", parse=lambda v, label: bool(v), switch=True, help="a switch")


def test_one_declaration_gives_flag_validation_store_and_resume_rule():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Toy)
    flags = {a.option_strings[0] for a in parser._actions if a.option_strings and a.dest != "help"}
    assert flags == {"--size", "--speed", "--mode", "--fast"}  # no flag for secret
    args = parser.parse_args(["--size", "7", "--fast"])
    given = given_options(args, Toy)
    assert given == {"size": "7", "fast": True}
    toy = Toy.resolve(**given)
    assert toy.size == 7 and toy.fast is True and toy.speed == 1.0
    with pytest.raises(InputError, match=r"^--size must be >= 2, got 1$"):
        Toy.resolve(size=1)
    with pytest.raises(InputError, match=r"^--mode must be one of a, b, got 'c'$"):
        Toy.resolve(mode="c")
    with pytest.raises(InputError, match="unknown setting"):
        Toy.resolve(colour="red")
    assert Toy.resolve().store_attrs() == {"size": 4, "speed": 1.0, "mode": "a", "fast": False}
    assert set(Toy.resolve().comparable()) == {"size", "mode", "secret", "fast"}  # speed may change
    conflicts = Toy.resolve(size=5, speed=9.0).resume_conflicts(Toy.resolve(size=4, speed=1.0))
    assert conflicts == [("--size", 4, 5)]
    stored = Toy.resolve(size=5).store_attrs()
    assert Toy.resolve(**Toy.from_store_attrs(stored)) == Toy.resolve(size=5)


@pytest.mark.parametrize("cls,command", [(IsotropicSettings, "simulate"), (TrainSettings, "train")])
def test_every_run_option_has_its_flag_in_the_help(cls, command, capsys):
    from thermonet.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    for name, spec in cls.options().items():
        if spec.flag is not None:
            assert spec.flag in text, (name, spec.flag)
    for flag in ("--lr", "--wd", "--elr", "--sphere-radius"):  # from the protocols' declarations
        assert flag in text


def test_run_options_reach_the_store_and_guard_resume(tmp_path):
    """Each stored option is in the store's attributes; on --resume the 'match' options must
    equal the store's and the 'free' ones may change (checked against a real store)."""
    run = dict(protocol="fixed-lr", dim=3, grid={"lr": [0.02], "wd": [0.02]}, seeds=[0], steps=400,
               queue_size=10, queue_every=10, log_every=50)
    out = simulate(out=tmp_path / "r.zarr", stop_after=200, **run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attrs_ = thermonet.open_run(out).attrs
    settings = IsotropicSettings.resolve(**run)
    for name, spec in IsotropicSettings.options().items():
        assert (name in attrs_) == spec.store, name
    with pytest.raises(StoreError, match=r"--queue-size: store 10 vs now 20"):
        simulate(out=out, resume=True, **{**run, "queue_size": 20})
    with pytest.raises(StoreError, match=r"--sigma: store 1.0 vs now 2.0"):
        simulate(out=out, resume=True, **{**run, "sigma": 2.0})
    simulate(out=out, resume=True, flush_seconds=0.5, checkpoint_every=1.0, **run)  # free options may change
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert thermonet.open_run(out).attrs["complete"] is True
    assert settings.comparable()["device"] == "cpu"


def test_derived_defaults_and_combinations_are_checked():
    s = IsotropicSettings.resolve(protocol="fixed-lr", grid={"lr": [0.1], "wd": [0.1]}, steps=100_000)
    assert s.log_every == 100 and s.entropy_method == "angles" and s.backend == "numba"
    assert s.entropy_every == 5000 and s.entropy_every % s.log_every == 0
    with pytest.raises(InputError, match="too few to fill the entropy queue"):
        IsotropicSettings.resolve(protocol="fixed-lr", grid={"lr": [0.1], "wd": [0.1]}, steps=100)
    with pytest.raises(InputError, match="--init-radius does not apply"):
        IsotropicSettings.resolve(protocol="fixed-sphere", grid={"lr": [0.1], "sphere_radius": [1.0]},
                                  steps=100_000, init_radius=2.0)
    with pytest.raises(InputError, match="fixed-lr does not use --elr"):
        IsotropicSettings.resolve(protocol="fixed-lr", grid={"lr": [0.1], "wd": [0.1], "elr": [1.0]},
                                  steps=100_000)
    with pytest.raises(InputError, match=r"--seeds must be <= 9,223,372,036,854,775,807"):
        IsotropicSettings.resolve(protocol="fixed-lr", grid={"lr": [0.1], "wd": [0.1]}, steps=100_000,
                                  seeds="100000000000000000000000")
    t = TrainSettings.resolve(model="mlp-si", protocol="fixed-lr", grid={"lr": [0.1], "wd": [0.1]}, steps=2000)
    assert t.queue_every == 1 and t.eval_batch_size == t.batch_size and t.log_every == 20
    assert np.array_equal(t.entropy_steps(), IsotropicSettings.entropy_steps(t))
