"""Fig. 5: super-classing, input noise, and teacher-student on d-cubes against the theory for the
same finite setting (eigenlearning from the measured NTK spectrum) and the 4/d heuristic."""

import jax
import numpy as np
import pytest
import xarray as xr

import experiments
import kernels
import paper_figs
import scaling
from paper_figs import fig5_manifold as fig5


def test_spectral_prediction_is_eigenlearning_on_the_pool_spectrum():
    """A pool whose kernel has a known eigensystem: K = N U diag(lam) U^T and targets with
    coefficients v (y = sqrt(N) U v) give exactly krr_theory(lam, v)'s held-out curve."""
    N = 300
    rng = np.random.default_rng(1)
    U, _ = np.linalg.qr(rng.standard_normal((N, N)))
    lam = np.arange(1, N + 1) ** -1.6
    V = np.stack([np.sqrt(lam), lam * rng.standard_normal(N)], axis=1)  # two targets
    K = N * (U * lam) @ U.T
    Y = np.sqrt(N) * U @ V
    D = np.array([10, 40, 160])
    pred = fig5.spectral_prediction(K, Y, D, ridge=1e-3)
    for j in range(2):
        exact = kernels.krr_theory(lam, V[:, j], D, ridge=1e-3, population_size=N).heldout_mse.values
        np.testing.assert_allclose(pred[j], exact, rtol=1e-8)
    np.testing.assert_allclose(fig5.spectral_prediction(K, Y[:, 0], D, ridge=1e-3)[0], pred[0], rtol=1e-12)


def test_spectral_prediction_agrees_with_krr_on_an_8_cube(seed_bootstrap_alpha):
    """On a pool of 1024 points of the 8-cube (GP teacher, the figure's NTK with biases), the
    held-out error eigenlearning predicts from the pool's spectrum is within 10% of kernel
    regression's, measured over 16 draws of nested training sets (measured: within 5%, standard
    errors 1-3%), and its exponent over D = 32..256 is less than half as far from the measured one as 4/d."""
    x = np.random.default_rng([7, 8]).uniform(-1, 1, (1024, 8))
    y = experiments.hypercube_teacher(8, "gaussian_process")(x)
    K = kernels.kernel_matrix(fig5.cube_kernel(), x)
    D = np.array([32, 64, 128, 256])
    pred = fig5.spectral_prediction(K, y, D, ridge=fig5.CUBE_RIDGE)[0]
    meas = kernels.krr_learning_curve(K, y, D, n_test=1024 - 256, ridge=fig5.CUBE_RIDGE, seeds=16, key=3)
    np.testing.assert_allclose(meas.test_mse.mean("seed").values, pred, rtol=0.1)
    a, lo, hi = seed_bootstrap_alpha(meas.test_mse.values, D.astype(float))
    a_th = float(scaling.fit("power", D.astype(float), pred).params["alpha"])
    assert abs(a - a_th) < 0.5 * abs(a - 4 / 8), (a, a_th)  # measured: 0.03 against 0.14
    assert hi - lo < 0.1, (lo, hi)  # an informative measurement


def test_the_cube_sweep_is_d_dimensional_on_both_sides():
    spec = fig5._krr(fig5.cube_task(3, "relu_network"), {"D": [8], "seed": [0]}, 4, "x", ridge=fig5.CUBE_RIDGE,
                     b_std=fig5.CUBE_B_STD)
    assert spec.task_params["b_std"] > 0 and spec.model_params["b_std"] > 0
    k = kernels.kernel_function(fig5.cube_kernel())
    x = np.random.default_rng(0).uniform(-1, 1, (5, 3))
    # a bias-free ReLU NTK is 2-homogeneous jointly, k(c x, c x') = c^2 k(x, x'); with biases it is not
    ratio = np.asarray(k(2 * x, None, "ntk")) / np.asarray(k(x, None, "ntk"))
    assert np.max(np.abs(ratio - 4.0)) > 0.5


@pytest.mark.slow  # over 20 s on 2 cores: kept out of the default run
def test_fig5_quick(out, seed_bootstrap_alpha, assert_roundtrip):
    rows, _, failures = paper_figs.run(out, only=["fig5_manifold"], progress=False, raise_errors=True)
    assert not failures and (out / "figures" / "fig5_manifold.png").exists()
    ds = assert_roundtrip(fig5, xr.load_dataset(out / "data" / "fig5_manifold.nc"))

    # -- super-classing, recomputed from the stored sweep with the tests' own estimate
    sc = experiments.load(out / "data" / "fig5_manifold_superclass_quick.zarr")
    D = sc.D.values.astype(float)
    fits = {int(k): seed_bootstrap_alpha(sc.test_loss.sel(n_classes=k).transpose("seed", "D").values, D, seed=int(k))
            for k in sc.n_classes.values}
    base = fits[10]
    for k, (a, lo, hi) in fits.items():
        assert float(ds[f"sc{k}_alpha"]) == pytest.approx(a, abs=1e-9)
        assert lo <= base[2] and base[1] <= hi, (k, fits)  # intervals overlap the 10-class one
    # fewer classes, an easier task: the loss changes
    assert float(sc.test_loss.sel(n_classes=2).mean()) < float(sc.test_loss.sel(n_classes=10).mean())
    diffs = [r for r in rows if r.quantity.startswith("alpha_D(") and "eigenlearning" in r.theory_label]
    assert len(diffs) == 2
    for r in diffs:
        # the measured difference, and the theory for this finite setting (the spectrum's
        # prediction for this super-class map) inside its interval
        k = int(r.quantity.split("(")[1].split()[0])
        assert r.value == pytest.approx(fits[k][0] - base[0], abs=1e-6)
        assert r.verdict == "agrees", r
    # "the exponent does not depend on N" holds on average over super-class maps, not map by map:
    # the spectrum's predicted differences over 20 maps average to 0 within their standard error,
    # and the figure's map (seed 0) is recomputed independently
    data, x, labels = fig5._digits_pool(fig5.CONFIG["quick"], None)
    K = kernels.kernel_matrix(kernels.mlp(2), x)
    cols = [(np.eye(10) - 0.1)[labels]] + [
        (np.eye(k) - 1.0 / k)[experiments.superclass(labels, k, key=jax.random.key(s))] for s in range(20)
        for k in (5, 2)]
    s = kernels.spectrum(K, y=np.concatenate(cols, axis=1))

    def alpha(c):
        th = kernels.krr_theory(s.eigenvalues, c, D, ridge=fig5.KRR["ridge"], population_size=x.shape[0])
        return float(scaling.fit("power", D, th.heldout_mse.values).params["alpha"])

    a10, start, pred = alpha(s.coefficients[:, :10]), 10, {5: [], 2: []}
    for _ in range(20):
        for k in (5, 2):
            pred[k].append(alpha(s.coefficients[:, start:start + k]) - a10)
            start += k
    for k, p in pred.items():
        p = np.asarray(p)
        assert p[0] == pytest.approx(float(ds.sc_theory_diff.sel(n_classes=k)), abs=1e-6)
        assert abs(p.mean()) < 2.5 * p.std() / np.sqrt(p.size), (k, p)

    # -- input noise: a clearly smaller exponent with each step of noise
    nz = experiments.load(out / "data" / "fig5_manifold_noise_quick.zarr")
    noisy = [seed_bootstrap_alpha(nz.test_loss.sel(noise=s).transpose("seed", "D").values, D)
             for s in nz.noise.values]
    for (a0, lo0, _), (a1, _, hi1) in zip(noisy, noisy[1:]):
        assert a1 < a0 and hi1 < lo0, noisy

    # -- d-cubes: exponents recomputed from the stored sweeps; the spectrum's prediction
    Dc = ds.D_cube.values
    for t in ds.teacher.values:
        for d in ds.dim.values:
            store = experiments.load(out / "data" / f"fig5_manifold_cube_{t}_d{int(d)}_quick.zarr")
            curves = store.test_loss.transpose("seed", "D").values
            assert np.all(np.diff(curves.mean(0)) < 0), (t, d)
            for f, sl in fig5.FITS.items():
                a, _, _ = seed_bootstrap_alpha(curves[:, sl], Dc[sl].astype(float), seed=int(d))
                stored = ds.sel(teacher=t, dim=d, fit=f)
                assert float(stored.cube_alpha) == pytest.approx(a, abs=1e-9)
            if d == 8:
                # in high d eigenlearning from the pool's spectrum predicts the fresh-sample error
                # within 20% at every D (measured in this quick run: within 16%); in low d it does
                # not (d = 2: 1.6-3.9x), the known failure of spectral predictions for
                # low-dimensional data (Tomasini, Sclocchi and Wyart 2022), reported in the rows
                ratio = curves.mean(0) / ds.cube_theory.sel(teacher=t, dim=d).values
                np.testing.assert_allclose(ratio, 1.0, atol=0.2)
    rows4d = [r for r in rows if r.quantity.startswith("d-cube")]
    assert len(rows4d) == 2 * 2 * ds.sizes["teacher"] * ds.sizes["dim"]
    assert {r.theory_label for r in rows4d} == {"KRR theory from the measured NTK spectrum (same D)",
                                                "4/d (the paper's heuristic)"}
