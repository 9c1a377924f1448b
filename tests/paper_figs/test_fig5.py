"""Fig. 5 at quick sizes: super-classing keeps, noise changes, the exponent."""

import pytest

import experiments
import paper_figs


@pytest.mark.slow  # over 20 s on 2 cores: kept out of the default run
def test_fig5_superclassing_keeps_and_noise_changes_the_exponent(out, seed_bootstrap_alpha):
    rows, _, _ = paper_figs.run(out, only=["fig5_manifold"], progress=False, raise_errors=True)
    assert (out / "figures" / "fig5_manifold.png").exists()
    sc = experiments.load(out / "data" / "fig5_manifold_superclass_quick.zarr")
    D = sc.D.values.astype(float)
    fits = {int(k): seed_bootstrap_alpha(sc.test_loss.sel(n_classes=k).transpose("seed", "D").values, D, seed=int(k))
            for k in sc.n_classes.values}
    base = fits[10]
    for k, (a, lo, hi) in fits.items():
        assert lo <= base[2] and base[1] <= hi, (k, fits)  # intervals overlap the 10-class one
        assert abs(a - base[0]) < 0.1, (k, fits)
    # the loss itself does change with the number of classes (fewer classes: easier task)
    assert float(sc.test_loss.sel(n_classes=2).mean()) < float(sc.test_loss.sel(n_classes=10).mean())

    nz = experiments.load(out / "data" / "fig5_manifold_noise_quick.zarr")
    noisy = [seed_bootstrap_alpha(nz.test_loss.sel(noise=s).transpose("seed", "D").values, D)
             for s in nz.noise.values]
    for (a0, lo0, _), (a1, _, hi1) in zip(noisy, noisy[1:]):
        assert a1 < a0 and hi1 < lo0, noisy  # more noise, a clearly smaller exponent
    paired = [r for r in rows if r.quantity.startswith("alpha_D(") and "classes" in r.quantity]
    assert len(paired) == 2 and all(r.theory == 0.0 for r in paired)
    for r in paired:  # the paired difference of exponents from the stored data, independently
        k = int(r.quantity.split("(")[1].split()[0])
        assert r.value == pytest.approx(fits[k][0] - base[0], abs=1e-6)
        assert r.verdict == "agrees", r
