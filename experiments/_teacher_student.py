"""Teacher-student tasks with known spectra: the ground truth of every exponent test."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from scaling import enable_x64

from . import _prng


def numpy_generator(key) -> np.random.Generator:
    """A numpy Generator seeded deterministically from a JAX key: for bulk Gaussian draws,
    where numpy's PCG64 is several times faster than JAX's threefry on CPUs."""
    bits = _prng.bits32(key, 4).astype(np.uint64)
    return np.random.default_rng([int(b) for b in bits])


@dataclasses.dataclass(frozen=True)
class TeacherStudent:
    r"""The linear random-feature teacher-student model of Bahri et al. (2021), Sec. 3.

    Teacher features ``F_M(x)``, ``M = 1..S``, are Gaussian with covariance
    ``diag(lambda)``, :math:`\lambda_M \propto M^{-(1+\alpha)}` (normalised to sum 1); the
    teacher is ``y = sum_M w_M F_M + noise``. Students see ``P`` features
    ``f = Proj F`` through a random Gaussian ``(P, S)`` projection. The kernel's spectrum is
    ``lambda`` and the target's coefficients are ``v_M = sqrt(lambda_M) w_M``, so every
    exponent is known: :math:`\alpha_D = \alpha_P = \alpha_K = \alpha` (for
    ``teacher_weights`` of unit scale).

    Use :func:`teacher_student` to build one.
    """

    n_features: int
    alpha: float
    noise: float = 0.0
    teacher_weights: str = "ones"
    target_alpha: float | None = None

    @property
    def eigenvalues(self) -> np.ndarray:
        """Kernel (feature covariance) spectrum, descending, summing to 1."""
        lam = np.arange(1, self.n_features + 1, dtype=np.float64) ** -(1.0 + self.alpha)
        return lam / lam.sum()

    def _base_weights(self) -> np.ndarray:
        if self.target_alpha is None:
            return np.ones(self.n_features)
        # Target power v_M^2 ~ M^-(1+target_alpha): w_M = v_M / sqrt(lambda_M).
        v2 = np.arange(1, self.n_features + 1, dtype=np.float64) ** -(1.0 + self.target_alpha)
        return np.sqrt(v2 / v2.sum() / self.eigenvalues)

    def weights(self, key=None) -> np.ndarray:
        """Teacher weights ``w``: deterministic (``v_M^2`` exactly as designed), or, with
        ``teacher_weights="random"``, multiplied by i.i.d. N(0, 1) draws from ``key`` (the
        paper's random teacher; its average target power is the same)."""
        w = self._base_weights()
        if self.teacher_weights == "random":
            if key is None:
                raise ValueError("teacher_weights='random' needs a key")
            w = w * np.asarray(jax.random.normal(_prng.key(key), (self.n_features,)), dtype=np.float64)
        return w

    @property
    def coefficients(self) -> np.ndarray:
        """Target coefficients ``v_M = sqrt(lambda_M) w_M`` in the kernel eigenbasis (their
        squares are the target power, averaged over random teachers)."""
        return np.sqrt(self.eigenvalues) * self._base_weights()

    def sample_inputs(self, key, n: int):
        """``n`` points of teacher features ``F (n, S)`` and targets ``y (n,)``.

        Materialises all ``S`` features: use :meth:`sample_features` for large ``S``.
        """
        k_x, k_w, k_e = _prng.split(key, 3)
        with enable_x64():
            F = np.asarray(jax.random.normal(k_x, (n, self.n_features), dtype=jnp.float64)) * np.sqrt(self.eigenvalues)
            eps = np.asarray(jax.random.normal(k_e, (n,), dtype=jnp.float64))
        y = F @ self.weights(k_w) + math.sqrt(self.noise) * eps
        return F, y

    def sample_features(self, key, n: int, n_student: int, *, chunk: int = 8192, return_covariance: bool = False):
        r"""``n`` points of ``n_student`` student features ``f = Proj F`` and targets, exactly,
        without materialising the ``S`` teacher features.

        ``(f, y)`` is jointly Gaussian with covariance
        :math:`[[\Pi\Lambda\Pi^T, \Pi\Lambda w], [w^T\Lambda\Pi^T, w^T\Lambda w]]` for the
        projection :math:`\Pi` drawn from ``key``; it is built in chunks over the teacher
        features and sampled through its Cholesky factor: ``O(P^2 S + n P^2)`` work and
        ``O(P^2)`` memory for any ``S``.

        Returns
        -------
        f : ndarray (n, n_student)
        y : ndarray (n,)
        covariance : ndarray (n_student + 1, n_student + 1), with ``return_covariance``
            The joint covariance of ``(f, y)`` including label noise: the exact population
            risk of any linear predictor follows from it (see
            :func:`kernels.rf_learning_curve`'s ``population_covariance``).
        """
        k_p, k_w, k_z, k_e = _prng.split(key, 4)
        lam = self.eigenvalues
        w = self.weights(k_w)
        P = int(n_student)
        cov_ff = np.zeros((P, P))
        cov_fy = np.zeros(P)
        gen = numpy_generator(k_p)
        root = np.sqrt(lam).astype(np.float32)
        root_w = (np.sqrt(lam) * w).astype(np.float32)
        for s in range(0, self.n_features, chunk):
            e = min(self.n_features, s + chunk)
            # float32 products (the P^2 S flops that dominate) within a chunk, float64 across
            # chunks: entries within ~2e-6 of sqrt(C_ii C_jj) (measured against float64), far
            # below any risk measured from this covariance. B = proj sqrt(lam) makes
            # cov_ff = B B^T one symmetric rank-k update (BLAS syrk: half a general product's
            # work) and cov_fy = B (sqrt(lam) w).
            B = gen.standard_normal((P, e - s), dtype=np.float32)
            B *= root[s:e]
            cov_ff += B @ B.T
            cov_fy += B @ root_w[s:e]
        z = numpy_generator(k_z).standard_normal((n, P + 1))
        eps = numpy_generator(k_e).standard_normal(n)
        cov = np.empty((P + 1, P + 1))
        cov[:P, :P] = cov_ff
        cov[:P, P] = cov[P, :P] = cov_fy
        cov[P, P] = float(np.sum(lam * w * w))
        # Tiny jitter: the covariance is PSD by construction, but its rank is at most S, so
        # with P >= S (or close) float32 rounding (~1e-7 of the trace) can make it indefinite:
        # then a factor from its eigendecomposition, rounding's negative eigenvalues set to 0.
        try:
            L = np.linalg.cholesky(cov + 1e-12 * np.trace(cov) / (P + 1) * np.eye(P + 1))
        except np.linalg.LinAlgError:
            vals, vecs = np.linalg.eigh(cov)
            L = vecs * np.sqrt(np.clip(vals, 0.0, None))
        sample = z @ L.T
        f, y = sample[:, :P], sample[:, P] + math.sqrt(self.noise) * eps
        if return_covariance:
            cov = cov.copy()
            cov[P, P] += self.noise
            return f, y, cov
        return f, y


def _projected_draw(task: TeacherStudent, key, n: int):
    k_w, k_g, k_e, k_f, k_b = _prng.split(key, 5)
    lam = task.eigenvalues
    w = task.weights(k_w)
    g = numpy_generator(k_g).standard_normal((n, task.n_features)) * np.sqrt(lam)  # teacher features
    y = g @ w + math.sqrt(task.noise) * numpy_generator(k_e).standard_normal(n)
    gram = g @ g.T
    return g, y, w, gram, k_f, k_b


def sample_projected(task: TeacherStudent, key, n: int, n_student: int):
    r"""``n`` points of ``n_student`` student features for few points and many features.

    The student features are ``f = Pi g`` for Gaussian teacher features ``g`` and a Gaussian
    ``(P, S)`` projection ``Pi``: given the ``n`` drawn ``g``, each feature's column
    ``f[:, i] = g Pi_i`` is an independent ``N(0, g g^T)`` draw, so the projection is never
    materialised: ``O(n S + n^2 P)`` work instead of :meth:`TeacherStudent.sample_features`'
    ``O(P^2 S)``, with the same joint law of ``(f, y)``. :func:`projected_risk` (same
    ``key``) completes the draw of ``Pi`` conditionally on ``f`` and returns exact
    population risks.

    Examples
    --------
    >>> import numpy as np
    >>> from experiments._teacher_student import teacher_student, sample_projected, projected_risk
    >>> task = teacher_student(500, alpha=0.5)
    >>> f, y = sample_projected(task, 0, n=4, n_student=64)
    >>> theta = np.linalg.lstsq(f, y, rcond=None)[0]
    >>> risk = projected_risk(task, 0, 4, 64, [theta])
    >>> f.shape, bool(risk[0] > 0)
    ((4, 64), True)
    """
    g, y, w, gram, k_f, _ = _projected_draw(task, key, n)
    L = np.linalg.cholesky(gram + 1e-12 * np.trace(gram) / n * np.eye(n))
    f = numpy_generator(k_f).standard_normal((int(n_student), n)) @ L.T
    return f.T.copy(), y


def projected_risk(task: TeacherStudent, key, n: int, n_student: int, thetas, *,
                   expected: bool = False) -> np.ndarray:
    r"""Exact population risks ``(Pi^T theta - w)^T Lambda (Pi^T theta - w) + noise`` of
    linear predictors ``theta`` (each on the first ``len(theta)`` features) for the draw of
    :func:`sample_projected` with the same ``key`` and ``n``.

    Given ``f``, ``Pi_i = g^T (g g^T)^{-1} f[:, i] + B_i`` with ``B_i`` i.i.d.
    ``N(0, I - P_g)`` (the projection off the span of the drawn ``g``), so for the stacked
    weights ``Theta`` the unseen part ``Theta B`` is Gaussian with covariance
    ``Theta Theta^T (x) (I - P_g)``: it is drawn jointly for every predictor (one draw of
    the projection serves them all), in ``O(m S (n + m))`` work.

    ``expected=True`` returns instead the risk averaged over ``B`` given ``f`` (Rao-Blackwell):
    ``sum_M lambda_M (u_M - w_M)^2 + |theta|^2 sum_M lambda_M (1 - h_M) + noise`` with
    ``u = Pi_seen^T theta`` and ``h_M = (g^T (g g^T)^{-1} g)_{MM}``. Its mean over seeds is the
    same; its seed-to-seed variance lacks the cross term ``2 (u - w)^T Lambda B^T theta``, which
    dominates the excess risk of few-point, many-feature predictors.

    Examples
    --------
    >>> import numpy as np
    >>> from experiments._teacher_student import teacher_student, sample_projected, projected_risk
    >>> task = teacher_student(300, alpha=0.5)
    >>> f, y = sample_projected(task, 1, n=3, n_student=40)
    >>> theta = np.linalg.lstsq(f, y, rcond=None)[0]
    >>> avg = projected_risk(task, 1, 3, 40, [theta], expected=True)[0]
    >>> bool(avg > task.noise)
    True
    """
    g, _, w, gram, k_f, k_b = _projected_draw(task, key, n)
    lam = task.eigenvalues
    L = np.linalg.cholesky(gram + 1e-12 * np.trace(gram) / n * np.eye(n))
    f = (numpy_generator(k_f).standard_normal((int(n_student), n)) @ L.T).T
    m = len(thetas)
    T = np.zeros((m, int(n_student)))
    for c, th in enumerate(thetas):
        T[c, : len(th)] = np.asarray(th, dtype=np.float64).ravel()
    gi = np.linalg.solve(gram, g)  # (g g^T)^{-1} g
    u = (T @ f.T) @ gi  # the part of Pi^T theta fixed by the drawn features
    if expected:
        h = np.einsum("iM,iM->M", gi, g)  # diagonal of the projector onto the span of g
        unseen = float(np.sum(lam * (1.0 - h)))
        return np.sum(lam * (u - w) ** 2, axis=1) + np.sum(T**2, axis=1) * unseen + task.noise
    Z = numpy_generator(k_b).standard_normal((m, task.n_features))
    Z -= (Z @ g.T) @ gi  # off the span of g
    ev, V = np.linalg.eigh(T @ T.T)
    u += (V * np.sqrt(np.clip(ev, 0.0, None))) @ (V.T @ Z)
    return np.sum(lam * (u - w) ** 2, axis=1) + task.noise


def teacher_student(n_features: int = 20000, alpha: float = 0.5, *, noise: float = 0.0,
                    teacher_weights: str = "ones", target_alpha: float | None = None) -> TeacherStudent:
    r"""A teacher-student task with power-law spectrum ``lambda_i ~ i^-(1+alpha)``.

    Parameters
    ----------
    n_features : int
        Teacher features ``S``; keep it well above every ``D`` and ``P`` studied (the
        missing tail beyond ``S`` steepens curves by a relative ``(n/S)^alpha``).
    alpha : float
        Spectral exponent ``alpha_K`` (> 0).
    noise : float
        Label-noise variance.
    teacher_weights : {"ones", "random"}
        Unit weights (target power exactly ``lambda``), or i.i.d. N(0, 1) per draw.
    target_alpha : float, optional
        Give the target its own power law ``v_i^2 ~ i^-(1+target_alpha)`` instead.

    Examples
    --------
    >>> import experiments
    >>> task = experiments.teacher_student(5000, alpha=0.5)
    >>> f, y = task.sample_features(0, n=100, n_student=20)
    >>> f.shape, y.shape
    ((100, 20), (100,))
    """
    if not isinstance(n_features, (int, np.integer)) or n_features < 2:
        raise ValueError(f"n_features must be an integer >= 2, got {n_features!r}")
    if not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be finite and > 0, got {alpha!r}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be finite and >= 0, got {noise!r}")
    if teacher_weights not in ("ones", "random"):
        raise ValueError(f"unknown teacher_weights {teacher_weights!r}; expected one of: ones, random")
    if target_alpha is not None and not (np.isfinite(target_alpha) and target_alpha > 0):
        raise ValueError(f"target_alpha must be finite and > 0, got {target_alpha!r}")
    return TeacherStudent(int(n_features), float(alpha), float(noise), teacher_weights, target_alpha)
