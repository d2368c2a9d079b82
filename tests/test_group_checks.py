"""The per-group checks: evidence labels, pass on data built to satisfy them, fail on data built to
break them, inconclusive when the data are too noisy, skip without groups."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from thermonet.checks import default_checks, get_check
from thermonet.store.synthetic import synthetic_group_run, synthetic_run

SMALL = {"fixed-lr": {"lr": [0.003, 0.01, 0.03], "wd": [0.003, 0.01, 0.03]},
         "fixed-elr": {"elr": [0.003, 0.01, 0.03], "wd": [0.003, 0.01, 0.03]},
         "fixed-sphere": {"lr": [0.003, 0.01, 0.03], "sphere_radius": [1.0, 2.0, 4.0]}}


def _run(name, ds):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return get_check(name).run(ds, window=0.5)


def test_evidence_labels():
    ds = synthetic_group_run("fixed-lr", SMALL["fixed-lr"])
    radius, equipartition = _run("group-radius", ds), _run("group-equipartition", ds)
    assert radius.evidence == "identity" and "orthogonal" in radius.evidence_reason
    assert equipartition.evidence == "theory" and equipartition.evidence_reason
    assert radius.to_dict()["evidence"] == "identity"


@pytest.mark.parametrize("protocol", list(SMALL))
def test_both_pass_on_the_product_of_spheres_theory(protocol):
    ds = synthetic_group_run(protocol, SMALL[protocol])
    radius = _run("group-radius", ds)
    assert radius.verdict == "pass", radius.summary
    assert radius.numbers["max_rel_error"] < 0.01  # the synthetic radii solve the recursion; 1 % noise
    equipartition = _run("group-equipartition", ds)
    assert equipartition.verdict == "pass", equipartition.summary
    assert abs(equipartition.numbers["T_ratio_mean:conv"] - 1) < 0.03


@pytest.mark.parametrize("protocol", list(SMALL))
def test_radius_fails_when_a_group_radius_is_off(protocol):
    ds = synthetic_group_run(protocol, SMALL[protocol])
    ds["rho_group"] = ds["rho_group"] * xr_factor(ds, "fc", 1.2)
    result = _run("group-radius", ds)
    assert result.verdict == "fail", result.summary
    assert result.numbers["max_rel_error:fc"] == pytest.approx(0.2, abs=0.02)
    assert result.numbers["max_rel_error:conv"] < 0.02


def xr_factor(ds, group, factor):
    values = np.where(ds["group"].values == group, factor, 1.0)
    return ds["rho_group"].isel(step=0, drop=True).copy(data=np.broadcast_to(
        values, ds["rho_group"].isel(step=0).shape))


@pytest.mark.parametrize("protocol", list(SMALL))
def test_equipartition_fails_when_the_groups_have_equal_noise(protocol):
    """sigma_g^2 equal in both groups: T_g falls as (D_g - 1)^(-1/2), the small group is hotter."""
    ds = synthetic_group_run(protocol, SMALL[protocol], sigma2={"conv": 0.2, "fc": 0.2})
    result = _run("group-equipartition", ds)
    assert result.verdict == "fail", result.summary
    # ideal gas per group: T_conv / T_fc = sqrt((40 - 1) / (6 - 1)) = 2.79
    ratio = result.numbers["T_ratio_mean:conv"] / result.numbers["T_ratio_mean:fc"]
    assert ratio == pytest.approx(np.sqrt(39 / 5), rel=0.05)
    # the identity still holds there: equipartition is what fails, not the measurement
    assert _run("group-radius", ds).verdict == "pass"


@pytest.mark.parametrize("name", ["group-radius", "group-equipartition"])
def test_inconclusive_when_the_series_are_too_noisy(name):
    ds = synthetic_group_run("fixed-lr", SMALL["fixed-lr"], noise=0.3, n_logs=20)
    result = _run(name, ds)
    assert result.verdict == "inconclusive", result.summary
    assert "seeds or the steps" in result.to_decide


def test_skip_without_groups_and_left_out_of_the_defaults():
    ds = synthetic_run("fixed-lr")
    for name in ("group-radius", "group-equipartition"):
        result = _run(name, ds)
        assert result.verdict == "skip" and "no per-group variables" in result.summary
    assert not {c.name for c in default_checks(ds)} & {"group-radius", "group-equipartition"}
    grouped = synthetic_group_run("fixed-lr", SMALL["fixed-lr"])
    assert {"group-radius", "group-equipartition"} <= {c.name for c in default_checks(grouped)}


def test_figures_draw():
    ds = synthetic_group_run("fixed-elr", SMALL["fixed-elr"], sigma2={"conv": 0.2, "fc": 0.2})
    for name in ("group-radius", "group-equipartition"):
        fig = _run(name, ds).plot()
        assert fig.axes and fig.axes[0].get_lines()


def test_the_report_shows_the_groups(tmp_path):
    from thermonet.reports.report import write_report

    ds = synthetic_group_run("fixed-lr", SMALL["fixed-lr"], sigma2={"conv": 0.2, "fc": 0.2})
    page, results = write_report([ds], tmp_path, labels=["grouped"])
    text = page.read_text()
    assert "grouped_h_groups.png" in text and "grouped_i_group_checks.png" in text
    assert (tmp_path / "grouped_h_groups.png").stat().st_size > 10_000
    assert "| group-equipartition | theory |" in text and "| group-radius | identity |" in text
    verdicts = {r.name: r.verdict for r in results[0]}
    assert verdicts["group-equipartition"] == "fail" and verdicts["group-radius"] == "pass"
    plain, _ = write_report([synthetic_run("fixed-lr")], tmp_path / "plain")
    assert "h_groups" not in plain.read_text()
