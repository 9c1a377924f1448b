"""The few BLAS/LAPACK calls of the random-feature engine, callable without holding the GIL.

SciPy's ``scipy.linalg.blas``/``lapack`` wrappers keep the GIL for the whole call, so
units run on threads side by side take turns instead of sharing the cores (measured: two
``dsyrk`` of size 1000 on two threads took 1.5x as long as one after the other). These
functions call the same routines (the BLAS/LAPACK SciPy is linked against) through the
function pointers SciPy exports for Cython (``scipy.linalg.cython_blas`` and
``cython_lapack``, as jaxlib does) with ctypes, which releases the GIL for the duration of
the call. They also read matrices in place: a row-major array is handed to BLAS as its
column-major transpose, so slices of the feature matrix need no copy.

Matrices are float64 arrays or views whose elements are contiguous along one axis.
"""

from __future__ import annotations

import ctypes

import numpy as np
import scipy.linalg.cython_blas as _cython_blas
import scipy.linalg.cython_lapack as _cython_lapack

_capsule_name = ctypes.pythonapi.PyCapsule_GetName
_capsule_name.restype = ctypes.c_char_p
_capsule_name.argtypes = [ctypes.py_object]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

_CHAR, _INT, _DBL = ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_void_p


def _function(module, name: str, *argtypes):
    capsule = module.__pyx_capi__[name]
    pointer = _capsule_pointer(capsule, _capsule_name(capsule))
    return ctypes.CFUNCTYPE(None, *argtypes)(pointer)  # CFUNCTYPE: the GIL is released


_dsyrk = _function(_cython_blas, "dsyrk", _CHAR, _CHAR, _INT, _INT, _DBL, _DBL, _INT, _DBL, _DBL, _INT)
_dtrsm = _function(_cython_blas, "dtrsm", _CHAR, _CHAR, _CHAR, _CHAR, _INT, _INT, _DBL, _DBL, _INT, _DBL, _INT)
_dpotrf = _function(_cython_lapack, "dpotrf", _CHAR, _INT, _DBL, _INT, _INT)
_dlacpy = _function(_cython_lapack, "dlacpy", _CHAR, _INT, _INT, _DBL, _INT, _DBL, _INT)
_dpocon = _function(_cython_lapack, "dpocon", _CHAR, _INT, _DBL, _INT, _DBL, _DBL, _DBL, _INT, _INT)


def _int(v: int):
    return ctypes.byref(ctypes.c_int(int(v)))


def _dbl(v: float):
    return ctypes.byref(ctypes.c_double(float(v)))


def _column_major(X: np.ndarray) -> tuple[int, int, bool]:
    """``(address, leading dimension, transposed)`` of ``X`` as a column-major matrix: as is
    (``transposed=False``) when its columns are contiguous, else its transpose."""
    if X.dtype != np.float64 or X.ndim != 2:
        raise TypeError(f"internal: BLAS operands are 2-D float64 arrays, got {X.dtype} {X.shape}")
    rows, cols = X.shape
    s0, s1 = X.strides
    if s0 == 8 or rows <= 1:  # columns contiguous: column-major as it is
        ld = s1 // 8 if cols > 1 else rows
        if cols <= 1 or (s1 > 0 and s1 % 8 == 0 and ld >= rows):
            return X.ctypes.data, max(1, ld), False
    if s1 == 8 or cols <= 1:  # rows contiguous: the column-major transpose
        ld = s0 // 8 if rows > 1 else cols
        if rows <= 1 or (s0 > 0 and s0 % 8 == 0 and ld >= cols):
            return X.ctypes.data, max(1, ld), True
    raise ValueError(f"internal: a BLAS operand needs one contiguous axis, got strides {X.strides}")


def _fortran(X: np.ndarray, what: str) -> tuple[int, int]:
    """``(address, leading dimension)`` of ``X``, which ``what`` needs with contiguous columns
    (Fortran order), as it is."""
    address, ld, transposed = _column_major(X)
    if transposed:
        raise ValueError(f"internal: {what} needs contiguous columns (Fortran order), got strides {X.strides}")
    return address, ld


def _writable_column_major(X: np.ndarray) -> tuple[int, int]:
    if not X.flags.writeable:
        raise ValueError("internal: the output of a BLAS call must be writeable")
    return _fortran(X, "the output of a BLAS call")


def syrk_lower(C: np.ndarray, A: np.ndarray, *, over_rows: bool, alpha: float = 1.0, beta: float = 1.0) -> None:
    """``C <- beta C + alpha A^T A`` (``over_rows``: a sum over ``A``'s rows) or
    ``beta C + alpha A A^T``, lower triangle only, in place.

    Examples
    --------
    >>> import numpy as np
    >>> from experiments._lapack import syrk_lower
    >>> A = np.arange(6.0).reshape(3, 2); C = np.zeros((2, 2), order="F")
    >>> syrk_lower(C, A, over_rows=True)
    >>> np.tril(C).tolist() == np.tril(A.T @ A).tolist()
    True
    """
    n = A.shape[1] if over_rows else A.shape[0]
    k = A.shape[0] if over_rows else A.shape[1]
    if C.shape != (n, n):
        raise ValueError(f"internal: syrk output {C.shape} for an operand of shape {A.shape}")
    if n == 0:
        return
    c_addr, ldc = _writable_column_major(C)
    if k == 0:  # BLAS scales the lower triangle by beta (zeroes it for beta = 0) and reads no A
        a_addr, lda, trans = C.ctypes.data, n, b"N"
    else:
        a_addr, lda, a_t = _column_major(A)
        # column-major A is A itself (a_t False) or A^T (a_t True); BLAS trans="T" forms op^T op
        trans = (b"T" if not a_t else b"N") if over_rows else (b"N" if not a_t else b"T")
    _dsyrk(b"L", trans, _int(n), _int(k), _dbl(alpha), a_addr, _int(lda), _dbl(beta), c_addr, _int(ldc))


def copy_lower(A: np.ndarray, B: np.ndarray) -> None:
    """``B``'s lower triangle (diagonal included) <- ``A``'s; ``B``'s upper triangle is left as
    it was (half the bytes of a full copy, all a Cholesky factorisation reads).

    Examples
    --------
    >>> import numpy as np
    >>> from experiments._lapack import copy_lower
    >>> A = np.asfortranarray(np.arange(4.0).reshape(2, 2)); B = np.full((2, 2), -1.0, order="F")
    >>> copy_lower(A, B); B.tolist()
    [[0.0, -1.0], [2.0, 3.0]]
    """
    n = A.shape[0]
    if A.shape != (n, n) or B.shape != (n, n):
        raise ValueError(f"internal: copy_lower of {A.shape} into {B.shape}")
    if n == 0:
        return
    b_addr, ldb = _writable_column_major(B)
    a_addr, lda = _fortran(A, "copy_lower")
    _dlacpy(b"L", _int(n), _int(n), a_addr, _int(lda), b_addr, _int(ldb))


def potrf_lower(A: np.ndarray) -> int:
    """Lower Cholesky factor of ``A`` in place (its lower triangle is read and overwritten; the
    upper is left as it was); returns LAPACK's ``info`` (0: success).

    Examples
    --------
    >>> import numpy as np
    >>> from experiments._lapack import potrf_lower
    >>> A = np.array([[4.0, 2.0], [2.0, 5.0]], order="F")
    >>> potrf_lower(A), np.tril(A).tolist()
    (0, [[2.0, 0.0], [1.0, 2.0]])
    """
    n = A.shape[0]
    if A.shape != (n, n):
        raise ValueError(f"internal: potrf needs a square matrix, got {A.shape}")
    if n == 0:
        return 0
    addr, lda = _writable_column_major(A)
    info = ctypes.c_int(0)
    _dpotrf(b"L", _int(n), addr, _int(lda), ctypes.byref(info))
    return int(info.value)


def sym_norm1_lower(A: np.ndarray) -> float:
    """The 1-norm (largest column sum of magnitudes) of the symmetric matrix whose lower
    triangle is ``A``'s (its upper triangle is not read).

    Examples
    --------
    >>> import numpy as np
    >>> from experiments._lapack import sym_norm1_lower
    >>> sym_norm1_lower(np.array([[1.0, 9.0], [-2.0, 3.0]]))
    5.0
    """
    low = np.abs(np.tril(A))
    with np.errstate(over="ignore", invalid="ignore"):  # entries near overflow: inf or NaN, said by the result
        return float(np.max(low.sum(axis=0) + low.sum(axis=1) - np.diag(low), initial=0.0))


def pocon_lower(L: np.ndarray, anorm: float) -> float:
    """LAPACK's estimate of the reciprocal 1-norm condition number of ``A = L L^T`` from its
    lower Cholesky factor ``L`` (upper triangle not read) and ``anorm``, ``A``'s 1-norm:
    ``O(n^2)`` work, within a small factor of the true value.

    Examples
    --------
    >>> import numpy as np
    >>> from experiments._lapack import pocon_lower
    >>> A = np.diag([1.0, 1e-6]); L = np.asfortranarray(np.sqrt(A))
    >>> float(np.round(1 / pocon_lower(L, 1.0)))
    1000000.0
    """
    n = L.shape[0]
    if L.shape != (n, n):
        raise ValueError(f"internal: pocon needs a square factor, got {L.shape}")
    if n == 0:
        return 1.0
    addr, ldl = _fortran(L, "pocon's factor")
    rcond, info = ctypes.c_double(0.0), ctypes.c_int(0)
    work, iwork = np.empty(3 * n), np.empty(n, dtype=np.intc)
    _dpocon(b"L", _int(n), addr, _int(ldl), _dbl(anorm), ctypes.byref(rcond), work.ctypes.data,
            iwork.ctypes.data_as(ctypes.POINTER(ctypes.c_int)), ctypes.byref(info))
    return float(rcond.value)


def trsm_lower(L: np.ndarray, B: np.ndarray, *, transpose: bool) -> None:
    """``B <- L^{-1} B`` (or ``L^{-T} B``) in place, ``L`` lower triangular (its upper triangle
    is not read), ``B`` column-major.

    Examples
    --------
    >>> import numpy as np
    >>> from experiments._lapack import trsm_lower
    >>> L = np.array([[2.0, 9.0], [1.0, 2.0]], order="F"); b = np.array([[2.0], [5.0]], order="F")
    >>> trsm_lower(L, b, transpose=False); b.ravel().tolist()
    [1.0, 2.0]
    """
    n, c = B.shape
    if L.shape != (n, n):
        raise ValueError(f"internal: trsm with a {L.shape} factor and {B.shape} right-hand sides")
    if n == 0 or c == 0:
        return
    b_addr, ldb = _writable_column_major(B)
    l_addr, ldl = _fortran(L, "trsm's factor")
    _dtrsm(b"L", b"L", b"T" if transpose else b"N", b"N", _int(n), _int(c), _dbl(1.0), l_addr, _int(ldl),
           b_addr, _int(ldb))
