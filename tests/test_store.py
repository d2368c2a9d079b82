"""Tests for thermonet.store: open_run, schema validation and the ds.thermo accessor.

Stores are synthetic (thermonet.store.synthetic.synthetic_run: exact theory plus noise)
or built by hand to be broken in one specific way.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

import thermonet
from thermonet.store.synthetic import synthetic_run
from thermonet.errors import InputError, StoreError
from thermonet.store import MeasuredStates, PartialRunWarning, parse_window, validate_run
from thermonet.theory.protocols import get_protocol


def _write(ds: xr.Dataset, path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(path), mode="w")
    return str(path)


@pytest.fixture(scope="module")
def lr_run() -> xr.Dataset:
    return synthetic_run("fixed-lr", dim=3, seeds=2, n_logs=40, noise=0.01, entropy_noise=0.01, rng=1)


# ---------------------------------------------------------------------- open_run: bad inputs
def test_open_run_is_exported():
    assert thermonet.open_run is thermonet.store.open_run
    assert "open_run" in thermonet.__all__


def test_missing_path(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        thermonet.open_run(tmp_path / "nope.zarr")


def test_plain_directory(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    with pytest.raises(StoreError, match="not a Zarr store"):
        thermonet.open_run(tmp_path / "plain")


def test_plain_file(tmp_path):
    path = tmp_path / "file.zarr"
    path.write_text("x")
    with pytest.raises(StoreError, match="not a Zarr store"):
        thermonet.open_run(path)


def test_zarr_store_without_attributes(tmp_path):
    path = tmp_path / "bare.zarr"
    zarr.open_group(str(path), mode="w")
    with pytest.raises(StoreError, match="not a thermonet run"):
        thermonet.open_run(path)


def test_zarr_store_with_other_data(tmp_path):
    ds = xr.Dataset({"a": ("x", np.arange(3.0))}, attrs={"title": "something else"})
    with pytest.raises(StoreError, match="not a thermonet run"):
        thermonet.open_run(_write(ds, tmp_path / "other.zarr"))


def test_no_finished_steps(tmp_path, lr_run):
    ds = lr_run.copy()
    ds.attrs = {**lr_run.attrs, "steps_done": 0, "complete": False}
    with pytest.raises(StoreError, match="no finished steps"):
        thermonet.open_run(_write(ds, tmp_path / "empty.zarr"))


def test_damaged_store(tmp_path, lr_run):
    path = _write(lr_run, tmp_path / "damaged.zarr")
    (tmp_path / "damaged.zarr" / "zarr.json").write_text("{not json")
    with pytest.raises(StoreError):
        thermonet.open_run(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ds: ds.assign_attrs(protocol="fixed-banana"), "unknown protocol"),
        (lambda ds: ds.assign_attrs(dim=1), "dim must be"),
        (lambda ds: ds.assign_attrs(kind="alien"), "kind must be"),
        (lambda ds: ds.drop_attrs(deep=False).assign_attrs({k: v for k, v in ds.attrs.items() if k != "steps_done"}),
         "steps_done"),
        (lambda ds: ds.drop_vars("rho"), "needs the variable"),
        (lambda ds: ds.rename({"lr": "elr"}), "needs the dimension 'lr'"),
        (lambda ds: ds.assign(loss=ds["loss"].isel(seed=0)), "variable 'loss' has dims"),
    ],
)
def test_schema_violations(tmp_path, lr_run, change, message):
    broken = change(lr_run)
    with pytest.raises(StoreError, match=message):
        thermonet.open_run(_write(broken, tmp_path / "broken.zarr"))
    with pytest.raises(StoreError, match=message):
        validate_run(broken)


def test_messages_are_one_line(tmp_path):
    for path in (tmp_path / "missing", tmp_path):
        with pytest.raises(StoreError) as info:
            thermonet.open_run(path)
        assert "\n" not in str(info.value)


# ---------------------------------------------------------------------- open_run: good stores
def test_roundtrip_and_dimension_order(tmp_path, lr_run):
    shuffled = lr_run.transpose("step", "seed", "wd", "lr", "entropy_step")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PartialRunWarning)
        ds = thermonet.open_run(_write(shuffled, tmp_path / "run.zarr"))
    assert ds["loss"].dims == ("lr", "wd", "seed", "step")
    assert ds["entropy"].dims == ("lr", "wd", "seed", "entropy_step")
    np.testing.assert_allclose(ds["rho"].values, lr_run["rho"].values)
    assert ds.attrs["protocol"] == "fixed-lr"


def test_partial_run_warns_and_uses_finished_steps(tmp_path):
    full = synthetic_run("fixed-elr", n_logs=40, log_every=100, rng=3)
    partial = full.copy(deep=True)
    partial.attrs.update(steps_done=3000, complete=False)
    # Entries after steps_done are NaN in a real partial store; here they hold garbage
    # that must not be read.
    partial["loss"][..., partial.step > 3000] = 1e6
    with pytest.warns(PartialRunWarning, match="partial run"):
        ds = thermonet.open_run(_write(partial, tmp_path / "partial.zarr"))
    st = ds.thermo.stationary(0.5)
    assert st.attrs["window_last_step"] == 3000
    assert st.attrs["window_logs"] == 15
    expected = full["loss"].sel(step=slice(1600, 3000)).mean("step")
    np.testing.assert_allclose(st["U"].values, expected.transpose(*st["U"].dims).values)


# ---------------------------------------------------------------------- the accessor
def test_accessor_metadata(lr_run):
    acc = lr_run.thermo
    assert acc.protocol == get_protocol("fixed-lr")
    assert acc.dim == 3
    assert acc.kind == "isotropic"
    assert acc.hyperparameters == ("lr", "wd")
    assert isinstance(acc, MeasuredStates)
    assert acc.steps_done == 4000 and acc.complete


def test_accessor_on_non_run_dataset():
    with pytest.raises(StoreError, match="not a thermonet run"):
        xr.Dataset().thermo  # noqa: B018


@pytest.mark.parametrize(("window", "logs"), [(0.5, 20), (1.0, 40), (0.01, 1), (0.26, 11), (5, 5), (40, 40), (1, 1)])
def test_window_selection(lr_run, window, logs):
    steps = lr_run.thermo.window_steps(window)
    assert steps.size == logs
    assert steps[-1] == 4000
    st = lr_run.thermo.stationary(window)
    manual = lr_run["loss"].sel(step=steps).mean("step").transpose("lr", "wd", "seed")
    np.testing.assert_allclose(st["U"].values, manual.values)
    esteps = lr_run.entropy_step.values
    chosen = esteps[esteps >= steps[0]]
    if chosen.size == 0:
        chosen = esteps[-1:]
    manual_s = lr_run["entropy"].sel(entropy_step=chosen).mean("entropy_step").transpose("lr", "wd", "seed")
    np.testing.assert_allclose(st["S"].values, manual_s.values)


@pytest.mark.parametrize("window", [0, -1, 0.0, 1.5, 41, True, "half", float("nan")])
def test_bad_windows(lr_run, window):
    with pytest.raises(InputError):
        lr_run.thermo.stationary(window)


def test_parse_window():
    assert parse_window("0.5") == 0.5 and isinstance(parse_window("0.5"), float)
    assert parse_window("200") == 200 and isinstance(parse_window("200"), int)
    assert parse_window("1.0") == 1.0 and isinstance(parse_window("1.0"), float)
    for bad in ("0", "1.5", "x", "-3"):
        with pytest.raises(InputError):
            parse_window(bad)


def _window_mean(ds: xr.Dataset, var: str, logs: int) -> np.ndarray:
    """Mean of ``var`` over the last ``logs`` logs, by hand (no accessor)."""
    return ds[var].isel(step=slice(-logs, None)).mean("step").values


def test_stationary_values(lr_run):
    st = lr_run.thermo.stationary(0.5)
    assert st["U"].dims == ("lr", "wd", "seed")
    assert st.attrs["window_logs"] == 20  # half of the 40 logs
    # the window means and T, V, P from closed forms written out here, not from the
    # protocol's temperature() (which the accessor itself calls): fixed LR,
    # T = eta_eff sigma2 / 2 with eta_eff = lr / rho**2 and rho the stationary mean radius
    rho = _window_mean(lr_run, "rho", 20)
    sigma2 = _window_mean(lr_run, "sigma2", 20)
    np.testing.assert_allclose(st["rho"], rho, rtol=1e-12)
    np.testing.assert_allclose(st["sigma2"], sigma2, rtol=1e-12)
    lr = lr_run["lr"].values[:, None, None]
    wd = lr_run["wd"].values[None, :, None]
    np.testing.assert_allclose(st["V"], rho**2 / 2, rtol=1e-12)
    np.testing.assert_allclose(st["T"], lr * sigma2 / (2 * rho**2), rtol=1e-12)
    np.testing.assert_allclose(st["P"], wd * np.ones_like(rho), rtol=1e-12)
    for var in ("S", "S_sphere", "trace_sigma", "grad_full_sq", "grad_norm_sq"):
        assert np.isfinite(st[var]).all()
    # the transient (first quarter of the run) is outside the window: U is close to exact
    from thermonet.theory import vmf

    exact = vmf.energy(1 / st["T"].values, 3)
    assert np.max(np.abs(st["U"].values / exact - 1)) < 0.03
    whole = lr_run.thermo.stationary(1.0)
    assert np.min(whole["U"].values / vmf.energy(1 / whole["T"].values, 3)) > 1.05


def test_stationary_temperature_fixed_elr_and_sphere():
    """T by hand for the other two protocols (THEORY §2: T = eta_eff sigma2 / 2): fixed ELR,
    eta_eff = elr; fixed sphere, eta_eff = lr / rho0**2 with rho0 the pinned radius."""
    sigma = 0.7  # sigma2 = 0.49, so a temperature that forgot sigma2 (or squared it twice) fails
    elr = synthetic_run("fixed-elr", sigma=sigma, n_logs=20, rng=5)
    st = elr.thermo.stationary(0.5)
    sigma2 = _window_mean(elr, "sigma2", 10)
    assert np.all(np.abs(sigma2 / sigma**2 - 1) < 0.05)
    np.testing.assert_allclose(st["T"], elr["elr"].values[:, None, None] * sigma2 / 2, rtol=1e-12)
    np.testing.assert_allclose(st["P"], elr["wd"].values[None, :, None] * np.ones_like(sigma2), rtol=1e-12)

    sphere = synthetic_run("fixed-sphere", sigma=sigma, n_logs=20, rng=6)
    st = sphere.thermo.stationary(0.5)
    sigma2 = _window_mean(sphere, "sigma2", 10)
    lr = sphere["lr"].values[:, None, None]
    rho0 = sphere["sphere_radius"].values[None, :, None]
    np.testing.assert_allclose(st["T"], lr * sigma2 / (2 * rho0**2), rtol=1e-12)
    np.testing.assert_allclose(st["P"], _window_mean(sphere, "lambda_eff", 10), rtol=1e-12)


def test_fixed_sphere_pressure_is_lambda_eff():
    ds = synthetic_run("fixed-sphere", n_logs=20, rng=2)
    st = ds.thermo.stationary(0.5)
    np.testing.assert_allclose(st["P"], st["lambda_eff"])
    np.testing.assert_allclose(st["rho"].mean("seed"), st["sphere_radius"].broadcast_like(st["rho"].mean("seed")),
                               rtol=0.01)


def test_nan_entries_are_skipped(lr_run):
    ds = lr_run.copy(deep=True)
    ds["loss"][0, 0, 0, -3:] = np.nan
    ds["entropy"][0, 0, 0, :] = np.nan
    st = ds.thermo.stationary(0.5)
    manual = lr_run["loss"][0, 0, 0, 20:-3].mean()
    np.testing.assert_allclose(st["U"][0, 0, 0], manual)
    assert np.isnan(st["S"][0, 0, 0])
    assert np.isfinite(st["S"][0, 0, 1])


def test_run_without_entropy_gives_nan():
    ds = synthetic_run("fixed-lr", n_logs=12, rng=4).drop_vars(["entropy", "entropy_sphere"])
    st = ds.thermo.stationary(0.5)
    assert np.isnan(st["S"]).all() and np.isnan(st["S_sphere"]).all()


def test_seed_mean(lr_run):
    sm = lr_run.thermo.seed_mean(0.5)
    assert "seed" not in sm.dims
    np.testing.assert_allclose(sm["U"], lr_run.thermo.stationary(0.5)["U"].mean("seed"))


def test_batch_standard_error():
    from thermonet.store import batch_standard_error

    rng = np.random.default_rng(0)
    series = xr.DataArray(rng.normal(0.0, 2.0, size=(400, 1000)), dims=("member", "step"))
    se = batch_standard_error(series, "step")
    assert se.dims == ("member",)
    # iid: SE of the mean = 2/sqrt(1000); batch means with 10 batches scatter by ~25 %
    assert np.median(se.values) == pytest.approx(2 / np.sqrt(1000), rel=0.1)
    assert np.isnan(batch_standard_error(series.isel(step=[0]), "step")).all()


def test_stationary_standard_errors(lr_run):
    st = lr_run.thermo.stationary(0.5)
    for var in ("U_se", "rho_se", "S_se", "S_sphere_se"):
        assert st[var].dims == ("lr", "wd", "seed")
        assert (st[var] > 0).all()
    # loss noise is 1 % per log: the standard error of a 20-log mean is 0.22 %; each member's
    # batch-means estimate has 9 degrees of freedom (+/- 24 %), the median of 50 about +/- 5 %
    assert float((st["U_se"] / st["U"]).median()) == pytest.approx(0.01 / np.sqrt(20), rel=0.15)


def test_entropy_standard_error_has_the_estimators_error_as_a_floor_in_short_windows(lr_run):
    """The estimator's own error (``entropy_se``) enters S_se where a window holds too few
    estimates for batch means: one estimate gets exactly its own error, three their rms/√3,
    and the larger of that and the batch means wins; with enough estimates batch means alone."""
    from thermonet.store.accessor import FEW_ENTROPY_ESTIMATES

    assert FEW_ENTROPY_ESTIMATES == 4
    assert "entropy_se" in lr_run.data_vars  # the schema declares it; synthetic stores leave it NaN
    base = lr_run.thermo.stationary(0.5)
    assert base.attrs["window_logs"] >= 4 and np.isfinite(base["S_se"].values).all()
    big = lr_run.copy(deep=True)
    big["entropy_se"] = xr.full_like(big["entropy"], 7.0)
    np.testing.assert_allclose(big.thermo.stationary(0.5)["S_se"].values, base["S_se"].values)  # enough estimates

    def window_of(ds, count):
        return ds.isel(entropy_step=slice(-count, None)).thermo.stationary(1.0)

    one = window_of(big, 1)
    np.testing.assert_allclose(one["S_se"].values, 7.0)  # batch means undefined: the estimator's error
    np.testing.assert_allclose(one["S_sphere_se"].values, 7.0)
    three = window_of(big, 3)
    np.testing.assert_allclose(three["S_se"].values, 7.0 / np.sqrt(3))  # far above 0.01-nat noise
    np.testing.assert_allclose(three["S"].values, window_of(lr_run, 3)["S"].values)  # the mean does not change
    small = lr_run.copy(deep=True)
    small["entropy_se"] = xr.full_like(small["entropy"], 1e-9)
    np.testing.assert_allclose(window_of(small, 3)["S_se"].values, window_of(lr_run, 3)["S_se"].values)
    # stores written before entropy_se: batch means only (NaN for one estimate)
    assert np.isnan(window_of(lr_run.drop_vars("entropy_se"), 1)["S_se"].values).all()
