"""Image data sets from the standard files in a local directory (or tensorflow-datasets).

Nothing is downloaded: put the files in a directory and pass its path (or set
``SCALING_DATA_DIR``). Every loader returns a :class:`Dataset` of float32 images in
[0, 1], NHWC, and integer labels.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path
from typing import NamedTuple

import numpy as np


class Dataset(NamedTuple):
    """Train and test arrays of an image classification data set."""

    x_train: np.ndarray  # (n, H, W, C) float32 in [0, 1]
    y_train: np.ndarray  # (n,) int
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    name: str

    def __repr__(self) -> str:  # shapes, not pixels
        return (f"Dataset({self.name!r}, train={self.x_train.shape} {self.x_train.dtype}, "
                f"test={self.x_test.shape}, n_classes={self.n_classes})")


_WHERE = {
    "mnist": ("train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
              "t10k-labels-idx1-ubyte[.gz] (http://yann.lecun.com/exdb/mnist/)"),
    "fashion_mnist": "the same four IDX files as MNIST, from https://github.com/zalandoresearch/fashion-mnist",
    "cifar10": ("cifar-10-batches-bin/ (data_batch_1.bin ... data_batch_5.bin, test_batch.bin) or "
                "cifar-10-batches-py/ (https://www.cs.toronto.edu/~kriz/cifar.html)"),
    "cifar100": "cifar-100-binary/ (train.bin, test.bin) or cifar-100-python/ (train, test)",
    "svhn": "train_32x32.mat and test_32x32.mat (http://ufldl.stanford.edu/housenumbers/)",
}


def _data_dir(path, name: str) -> Path:
    p = Path(path if path is not None else os.environ.get("SCALING_DATA_DIR", "."))
    if not p.exists():
        raise FileNotFoundError(f"{name}: data directory {p} does not exist; put {_WHERE[name]} there")
    return p


def _missing(name: str, root: Path, tried) -> FileNotFoundError:
    return FileNotFoundError(
        f"{name}: could not find its files under {root} (looked for {', '.join(map(str, tried))}). "
        f"Put {_WHERE[name]} in that directory, pass path=..., or install tensorflow-datasets and use source='tfds'."
    )


def _tfds(name: str, data_dir) -> Dataset:
    try:
        import tensorflow_datasets as tfds
    except ImportError as exc:
        raise ImportError("source='tfds' needs tensorflow-datasets: pip install tensorflow-datasets") from exc
    tf_name = {"fashion_mnist": "fashion_mnist", "cifar10": "cifar10", "cifar100": "cifar100", "svhn": "svhn_cropped",
               "mnist": "mnist"}[name]
    out = []
    for split in ("train", "test"):
        x, y = tfds.as_numpy(tfds.load(tf_name, split=split, data_dir=data_dir, as_supervised=True, batch_size=-1,
                                       download=False))
        out += [np.asarray(x, np.float32) / 255.0, np.asarray(y, np.int64)]
    return Dataset(*out, n_classes=int(max(out[1].max(), out[3].max()) + 1), name=name)


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)


def read_idx(path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): the MNIST family's format."""
    path = Path(path)
    raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}.get(raw[2])
    if dtype is None:
        raise ValueError(f"{path}: unknown IDX data type 0x{raw[2]:02x}")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {data.size} values")
    return data.reshape(shape)


def _idx_family(name, path, source):
    if source == "tfds":
        return _tfds(name, path)
    root = _data_dir(path, name)
    parts = {}
    for key, stem in (("x_train", "train-images-idx3-ubyte"), ("y_train", "train-labels-idx1-ubyte"),
                      ("x_test", "t10k-images-idx3-ubyte"), ("y_test", "t10k-labels-idx1-ubyte")):
        cands = [root / stem, root / f"{stem}.gz", root / stem.replace("-idx", ".idx")]
        found = next((c for c in cands if c.exists()), None)
        if found is None:
            raise _missing(name, root, cands)
        parts[key] = read_idx(found)
    x_train = parts["x_train"][..., None].astype(np.float32) / 255.0
    x_test = parts["x_test"][..., None].astype(np.float32) / 255.0
    return Dataset(x_train, parts["y_train"].astype(np.int64), x_test, parts["y_test"].astype(np.int64), 10, name)


def load_mnist(path=None, *, source: str = "files") -> Dataset:
    """MNIST from its IDX files in ``path`` (or ``source="tfds"``).

    Examples
    --------
    >>> import experiments
    >>> experiments.load_mnist("/nonexistent")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    FileNotFoundError: mnist: data directory /nonexistent does not exist; put train-images-idx3-ubyte...
    """
    return _idx_family("mnist", path, source)


def load_fashion_mnist(path=None, *, source: str = "files") -> Dataset:
    """Fashion-MNIST from its IDX files in ``path`` (or ``source="tfds"``)."""
    return _idx_family("fashion_mnist", path, source)


# ---------------------------------------------------------------- CIFAR


def _latin1_encode(obj, encoding="latin1", errors="strict"):
    """``_codecs.encode`` as Python 3 writes bytes into a protocol-2 pickle, and nothing more."""
    if not isinstance(obj, str) or encoding.replace("-", "").lower() != "latin1" or errors != "strict":
        raise pickle.UnpicklingError(
            f"refusing _codecs.encode({type(obj).__name__}, {encoding!r}) in a data file: only latin1 text is allowed")
    return obj.encode("latin1")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickle the CIFAR python batches, allowing only the numpy globals they need.

    Python 2 pickles (the files as distributed) need numpy's array reconstruction; Python 3
    re-saves at protocol 2 also write bytes as ``_codecs.encode(text, "latin1")`` (answered
    by a latin1-only stand-in), and protocol 5 writes arrays through ``_frombuffer``.
    Everything else (``os.system``, ``builtins.eval``, arbitrary classes) is refused.
    """

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
                ("numpy._core.numeric", "_frombuffer")}

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def _load_py_batch(path):
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError:
        raise
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise ValueError(
            f"{path} is not a CIFAR python batch (unreadable pickle: {type(exc).__name__}: {exc})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path} is not a CIFAR python batch: it holds a {type(d).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def _cifar_images(flat):
    return flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0


def _check_labels(labels, n_images: int, n_classes: int, where) -> np.ndarray:
    """Labels as int64, or a ValueError: one integer label in [0, n_classes) per image."""
    y = np.asarray(labels)
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or y.size == 0):
        raise ValueError(f"{where}: labels must be a 1-D list of integers, got {y.dtype} of shape {y.shape}")
    if y.size != n_images:
        raise ValueError(f"{where}: {y.size} labels for {n_images} images")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        bad = y[(y < 0) | (y >= n_classes)]
        raise ValueError(f"{where}: labels must be in [0, {n_classes - 1}], found {int(bad[0])} "
                         f"({bad.size} out of range)")
    return y.astype(np.int64)


def _py_batch(path, label_keys: dict[str, int]):
    """Images and the requested label columns of one CIFAR python batch, validated."""
    d = _load_py_batch(path)
    missing = {"data", *label_keys} - set(d)
    if missing:
        raise ValueError(f"{path} is not a CIFAR python batch: missing {sorted(missing)} (has {sorted(map(str, d))})")
    data = np.asarray(d["data"])
    if data.ndim != 2 or data.shape[1] != 3072 or not np.issubdtype(data.dtype, np.integer):
        raise ValueError(f"{path}: 'data' must be an integer array of shape (n, 3072), got {data.dtype} {data.shape}")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise ValueError(f"{path}: pixel values must be in [0, 255], found [{data.min()}, {data.max()}]")
    labels = {k: _check_labels(d[k], data.shape[0], n, f"{path} '{k}'") for k, n in label_keys.items()}
    return _cifar_images(data), labels


def _read_cifar_bin(path, label_classes: tuple[int, ...]):
    raw = np.fromfile(path, dtype=np.uint8)
    label_bytes = len(label_classes)
    rec = label_bytes + 3072
    if raw.size % rec:
        raise ValueError(f"{path}: size {raw.size} is not a multiple of the record size {rec}")
    raw = raw.reshape(-1, rec)
    for j, n in enumerate(label_classes):
        _check_labels(raw[:, j], raw.shape[0], n, f"{path} label byte {j}")
    return raw[:, :label_bytes].astype(np.int64), _cifar_images(raw[:, label_bytes:])


def load_cifar10(path=None, *, source: str = "files") -> Dataset:
    """CIFAR-10 from ``cifar-10-batches-bin`` or ``cifar-10-batches-py`` in ``path``."""
    if source == "tfds":
        return _tfds("cifar10", path)
    root = _data_dir(path, "cifar10")
    binary = root / "cifar-10-batches-bin" if (root / "cifar-10-batches-bin").exists() else root
    py = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").exists() else root
    if (binary / "data_batch_1.bin").exists():
        parts = [_read_cifar_bin(binary / f"data_batch_{i}.bin", (10,)) for i in range(1, 6)]
        y_te, x_te = _read_cifar_bin(binary / "test_batch.bin", (10,))
        y_tr = np.concatenate([p[0] for p in parts])[:, 0]
        x_tr = np.concatenate([p[1] for p in parts])
        return Dataset(x_tr, y_tr, x_te, y_te[:, 0], 10, "cifar10")
    if (py / "data_batch_1").exists():
        batches = [_py_batch(py / f"data_batch_{i}", {"labels": 10}) for i in range(1, 6)]
        x_te, y_te = _py_batch(py / "test_batch", {"labels": 10})
        x_tr = np.concatenate([x for x, _ in batches])
        y_tr = np.concatenate([y["labels"] for _, y in batches])
        return Dataset(x_tr, y_tr, x_te, y_te["labels"], 10, "cifar10")
    raise _missing("cifar10", root, [binary / "data_batch_1.bin", py / "data_batch_1"])


def load_cifar100(path=None, *, label: str = "fine", source: str = "files") -> Dataset:
    """CIFAR-100 with its 100 ``"fine"`` or 20 ``"coarse"`` (super-class) labels."""
    if label not in ("fine", "coarse"):
        raise ValueError(f"unknown label {label!r}; expected one of: fine, coarse")
    if source == "tfds":
        if label == "coarse":
            raise ValueError("coarse CIFAR-100 labels are read from the original files; use source='files'")
        return _tfds("cifar100", path)
    root = _data_dir(path, "cifar100")
    binary = root / "cifar-100-binary" if (root / "cifar-100-binary").exists() else root
    py = root / "cifar-100-python" if (root / "cifar-100-python").exists() else root
    col = 0 if label == "coarse" else 1
    n = 20 if label == "coarse" else 100
    if (binary / "train.bin").exists():
        y_tr, x_tr = _read_cifar_bin(binary / "train.bin", (20, 100))
        y_te, x_te = _read_cifar_bin(binary / "test.bin", (20, 100))
        return Dataset(x_tr, y_tr[:, col], x_te, y_te[:, col], n, f"cifar100_{label}")
    if (py / "train").exists():
        key = f"{label}_labels"
        (x_tr, y_tr), (x_te, y_te) = (_py_batch(py / split, {key: n}) for split in ("train", "test"))
        return Dataset(x_tr, y_tr[key], x_te, y_te[key], n, f"cifar100_{label}")
    raise _missing("cifar100", root, [binary / "train.bin", py / "train"])


# ---------------------------------------------------------------- SVHN, digits


def load_svhn(path=None, *, source: str = "files") -> Dataset:
    """SVHN (cropped digits) from ``train_32x32.mat`` and ``test_32x32.mat``; label 10 is digit 0."""
    if source == "tfds":
        return _tfds("svhn", path)
    from scipy.io import loadmat

    root = _data_dir(path, "svhn")
    out = []
    for split in ("train", "test"):
        f = root / f"{split}_32x32.mat"
        if not f.exists():
            raise _missing("svhn", root, [f])
        m = loadmat(f)
        x = np.transpose(m["X"], (3, 0, 1, 2)).astype(np.float32) / 255.0
        y = m["y"].ravel().astype(np.int64) % 10
        out += [x, y]
    return Dataset(*out, n_classes=10, name="svhn")


def _digits_arrays():
    """scikit-learn's digits file, read directly: importing scikit-learn costs seconds."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    path = Path(next(iter(spec.submodule_search_locations)), "datasets", "data", "digits.csv.gz") if spec else None
    if path is None or not path.exists():
        from sklearn.datasets import load_digits as sk_digits

        return sk_digits(return_X_y=True)
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1], data[:, -1].astype(np.int64)


def load_digits(*, test_fraction: float = 0.3, key=0) -> Dataset:
    """scikit-learn's 8x8 digits (1,797 images, ships with scikit-learn): the stand-in for
    image data when no real data set is on disk. A seeded split into train and test.

    Examples
    --------
    >>> import experiments
    >>> ds = experiments.load_digits()
    >>> ds.x_train.shape[1:], ds.n_classes
    ((8, 8, 1), 10)
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    X, y = _digits_arrays()
    x = (X / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
    perm = np.random.default_rng(key).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    te, tr = perm[:n_test], perm[n_test:]
    return Dataset(x[tr], y[tr].astype(np.int64), x[te], y[te].astype(np.int64), 10, "digits")


LOADERS = {
    "digits": lambda path=None, **kw: load_digits(**kw),
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "svhn": load_svhn,
}


def load_dataset(name: str, path=None, **kwargs) -> Dataset:
    """Load a data set by name: one of ``digits``, ``mnist``, ``fashion_mnist``, ``cifar10``,
    ``cifar100`` (``label="fine"|"coarse"``), ``svhn``."""
    if name not in LOADERS:
        raise ValueError(f"unknown data set {name!r}; expected one of: {', '.join(LOADERS)}")
    return LOADERS[name](path, **kwargs)


def write_idx(path, array: np.ndarray) -> None:
    """Write an IDX file (gzipped when ``path`` ends in .gz): for tests and conversions."""
    array = np.asarray(array)
    code = {np.dtype("uint8"): 0x08, np.dtype("int8"): 0x09}[array.dtype]
    head = bytes([0, 0, code, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    payload = head + array.tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)

