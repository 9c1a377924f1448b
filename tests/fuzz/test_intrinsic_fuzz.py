"""Fuzz ``regimes.intrinsic_dimension``: any input gives a clear error or a finite, positive estimate.

Hypothesis draws small clouds (including empty, one-point, constant, lattice-like, huge,
tiny, NaN and inf entries) and options (method, k, scales, discard fraction, dtype). Every
draw must either raise ``ValueError``/``TypeError`` whose message names the problem, or
return a finite estimate > 0 with a finite spread that brackets every per-scale estimate.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import regimes

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, 1.0, -1.0, 1e-300, 1e300, 1e4, 0.5]),
)
clouds = hnp.arrays(np.float64, st.tuples(st.integers(0, 40), st.integers(0, 4)), elements=values)
options = st.fixed_dictionaries({
    "method": st.sampled_from(["twonn", "twonn_mle", "mle", "pca"]),
    "k": st.one_of(st.integers(-2, 30), st.just(5.0)),
    "discard_fraction": st.one_of(st.floats(-0.5, 1.5), st.just(float("nan"))),
    "scales": st.one_of(st.none(), st.lists(st.one_of(st.floats(-1, 50), st.just(float("nan"))), max_size=3)),
    "dtype": st.sampled_from([np.float32, np.float64, "float16", "int8"]),
    "duplicates": st.sampled_from(["drop", "raise", "keep"]),
})


def check(X, opts):
    try:
        est = regimes.intrinsic_dimension(X, **opts)
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        assert msg and "\n" not in msg.strip() and len(msg) < 400, msg
        return None
    value = float(est)
    assert np.isfinite(value) and value > 0, est
    lo, hi = est.spread
    assert np.isfinite(lo) and np.isfinite(hi) and lo <= hi
    by = est.by_scale.values
    assert np.all(np.isfinite(by)) and np.all((lo <= by) & (by <= hi))
    assert est.n_points + est.n_duplicates == np.asarray(X).shape[0]
    return est


@SETTINGS
@given(X=clouds, opts=options)
def test_any_cloud_and_options_give_a_clear_error_or_a_finite_estimate(X, opts):
    check(X, opts)


@SETTINGS
@given(X=hnp.arrays(np.float64, st.tuples(st.integers(3, 60), st.integers(1, 3)),
                    elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)),
       method=st.sampled_from(["twonn", "twonn_mle", "mle"]))
@example(X=np.array([[8.05925549e-307, 0.0], [0.0, 145.0], [0.0, 0.0]]), method="twonn")  # random run
def test_finite_clouds_are_refused_only_for_a_named_reason(X, method):
    # Finite data may still be refused (too few distinct points, a lattice, k too large),
    # but only with one of these messages, never an obscure numpy error.
    try:
        est = regimes.intrinsic_dimension(X, method, k=3)
    except ValueError as exc:
        assert any(s in str(exc) for s in ("distinct points", "undefined", "k must be in", "too few points", "near-duplicates")), exc
    else:
        assert np.isfinite(float(est)) and float(est) > 0, est


def test_refusals_name_the_value():
    with pytest.raises(TypeError, match="real numbers"):
        regimes.intrinsic_dimension(np.array([["a", "b"]] * 5))
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        regimes.intrinsic_dimension(np.eye(5), dtype="float16")
    with pytest.raises(ValueError, match="only 1 distinct points"):
        regimes.intrinsic_dimension(np.ones((30, 2)))
