"""Fuzz ``regimes.classify``: any input gives a clear error or an honest, finite classification.

Hypothesis draws curves of a few fixed lengths (so the batched fits compile once per length)
whose sizes and losses include zeros, negatives, NaN, inf, huge and tiny values, constants and
exact power laws, plus options (``l_inf`` including NaN, ``level``, ``min_points``,
``monotone``, ``skipna``). Every draw must either raise ``ValueError``/``TypeError`` with a
one-line message, or return a label from ``regimes.LABELS`` with a reason; a labelled curve
("variance-limited" or "resolution-limited") has a finite exponent inside its finite interval,
and no point is dropped silently (``n_points`` counts exactly the finite, usable points).
"""

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import regimes

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LENGTHS = (13, 15)  # one compiled size (16) for all: the fits, not the sizes, are fuzzed

special = st.sampled_from([0.0, -1.0, np.nan, np.inf, -np.inf, 1e-300, 1e300, 1.0])


@st.composite
def curves(draw):
    n = draw(st.sampled_from(LENGTHS))
    x = np.geomspace(10.0, draw(st.sampled_from([1e3, 1e5])), n)
    kind = draw(st.sampled_from(["power", "offset", "constant", "random"]))
    alpha = draw(st.floats(0.05, 2.0))
    if kind == "power":
        y = 3.0 * x**-alpha
    elif kind == "offset":
        y = draw(st.floats(0.0, 2.0)) + 50.0 * x**-alpha
    elif kind == "constant":
        y = np.full(n, draw(st.floats(1e-3, 10.0)))
    else:
        y = np.asarray(draw(st.lists(st.floats(1e-6, 1e3), min_size=n, max_size=n)))
    noise = draw(st.sampled_from([0.0, 0.01, 0.3]))
    y = y * np.exp(noise * np.random.default_rng(draw(st.integers(0, 99))).standard_normal(n))
    for _ in range(draw(st.integers(0, 2))):  # poison a few entries of x or y
        target = x if draw(st.booleans()) else y
        target[draw(st.integers(0, n - 1))] = draw(special)
    return x, y


options = st.fixed_dictionaries({}, optional={
    "l_inf": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(0.0)),
    "level": st.one_of(st.floats(-0.5, 1.5), st.just(0.95)),
    "min_points": st.one_of(st.integers(0, 8), st.just(4.5)),
    "monotone": st.sampled_from([None, "after", "longest", "sideways"]),
    "skipna": st.booleans(),
})


@SETTINGS
@given(curves(), options)
@example(curve=(np.geomspace(10.0, 1e3, 13), np.r_[0.0, 3.0 * np.geomspace(10.0, 1e3, 13)[1:] ** -0.5]),
         opts={"l_inf": 0.0})  # found by CI's random run: a zero loss divided the running minimum
def test_classify_gives_a_clear_error_or_an_honest_label(curve, opts):
    x, y = curve
    try:
        c = regimes.classify(x, y, **opts)
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        assert msg and "\n" not in msg.strip() and len(msg) < 400, msg
        return
    # Whatever was accepted was valid: sizes finite and positive, losses finite unless skipped.
    assert np.all(np.isfinite(x) & (x > 0))
    assert not np.isinf(y).any()
    assert opts.get("skipna", False) or not np.isnan(y).any()
    assert c.label in regimes.LABELS
    assert c.evidence["reason"]
    target = y - opts["l_inf"] if opts.get("l_inf") is not None else y
    usable = np.isfinite(target) & (target > 0)
    if opts.get("monotone") is None:
        assert c.evidence["n_points"] == np.count_nonzero(usable)
    else:
        assert c.evidence["n_points"] <= np.count_nonzero(usable)
    if c.label != "undetermined":
        lo, hi = c.alpha_ci
        assert np.isfinite(c.alpha) and np.isfinite(lo) and np.isfinite(hi)
        assert lo <= c.alpha <= hi
        assert c.evidence["n_points"] >= opts.get("min_points", 5)
        if c.label == "variance-limited":
            assert 1 - c.evidence["margin"] <= lo and hi <= 1 + c.evidence["margin"]
