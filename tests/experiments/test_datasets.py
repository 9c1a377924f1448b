"""Loaders on files written in the real formats; transforms."""

import pickle

import numpy as np
import pytest
import scipy.io

import experiments


@pytest.fixture
def images(rng):
    return rng.integers(0, 256, (7, 28, 28), dtype=np.uint8), rng.integers(0, 10, 7).astype(np.uint8)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_idx_files(tmp_path, images, gz):
    x, y = images
    ext = ".gz" if gz else ""
    for split, n in (("train", 7), ("t10k", 5)):
        experiments.write_idx(tmp_path / f"{split}-images-idx3-ubyte{ext}", x[:n])
        experiments.write_idx(tmp_path / f"{split}-labels-idx1-ubyte{ext}", y[:n])
    ds = experiments.load_mnist(tmp_path)
    assert ds.x_train.shape == (7, 28, 28, 1) and ds.x_test.shape == (5, 28, 28, 1)
    np.testing.assert_allclose(ds.x_train[..., 0] * 255, x)
    np.testing.assert_array_equal(ds.y_test, y[:5])
    fm = experiments.load_fashion_mnist(tmp_path)
    assert fm.name == "fashion_mnist"


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"mnist: could not find its files under .*train-images-idx3-ubyte"):
        experiments.load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="train_32x32.mat"):
        experiments.load_svhn(tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-bin"):
        experiments.load_cifar10(tmp_path)
    with pytest.raises(ValueError, match="not an IDX file"):
        (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
        experiments.read_idx(tmp_path / "bad")


def cifar_records(rng, n, label_bytes):
    labels = rng.integers(0, 10, (n, label_bytes)).astype(np.uint8)
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return labels, pixels, np.concatenate([labels, pixels], axis=1)


def test_cifar10_binary_and_python_formats(tmp_path, rng):
    b = tmp_path / "bin" / "cifar-10-batches-bin"
    b.mkdir(parents=True)
    records = [cifar_records(rng, 3, 1) for _ in range(6)]
    for i in range(5):
        records[i][2].tofile(b / f"data_batch_{i + 1}.bin")
    records[5][2].tofile(b / "test_batch.bin")
    ds = experiments.load_cifar10(tmp_path / "bin")
    assert ds.x_train.shape == (15, 32, 32, 3) and ds.y_test.tolist() == records[5][0][:, 0].tolist()
    # pixel layout: channel-major rows of 1024 (R, then G, then B), converted to NHWC
    assert ds.x_train[0, 0, 1, 2] == pytest.approx(records[0][1][0, 2048 + 1] / 255)
    p = tmp_path / "py" / "cifar-10-batches-py"
    p.mkdir(parents=True)
    for i in range(5):
        with open(p / f"data_batch_{i + 1}", "wb") as f:
            pickle.dump({b"data": records[i][1], b"labels": records[i][0][:, 0].tolist()}, f)
    with open(p / "test_batch", "wb") as f:
        pickle.dump({b"data": records[5][1], b"labels": records[5][0][:, 0].tolist()}, f)
    dp = experiments.load_cifar10(tmp_path / "py")
    np.testing.assert_array_equal(dp.x_train, ds.x_train)


def test_cifar_python_batches_refuse_arbitrary_objects(tmp_path):
    p = tmp_path / "cifar-10-batches-py"
    p.mkdir()
    with open(p / "data_batch_1", "wb") as f:
        pickle.dump({b"data": object()}, f)  # not numpy: would need builtins.object
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        experiments.load_cifar10(tmp_path)


def test_cifar100_fine_and_coarse_labels(tmp_path, rng):
    d = tmp_path / "cifar-100-binary"
    d.mkdir()
    labels, pixels, rec = cifar_records(rng, 4, 2)
    rec.tofile(d / "train.bin")
    rec.tofile(d / "test.bin")
    fine = experiments.load_cifar100(tmp_path, label="fine")
    coarse = experiments.load_cifar100(tmp_path, label="coarse")
    assert fine.y_train.tolist() == labels[:, 1].tolist() and fine.n_classes == 100
    assert coarse.y_train.tolist() == labels[:, 0].tolist() and coarse.n_classes == 20
    with pytest.raises(ValueError, match="unknown label 'medium'"):
        experiments.load_cifar100(tmp_path, label="medium")


def test_svhn_mat_files(tmp_path, rng):
    for split, n in (("train", 6), ("test", 3)):
        X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [1], [2], [3], [4], [5]][:n], dtype=np.uint8)
        scipy.io.savemat(tmp_path / f"{split}_32x32.mat", {"X": X, "y": y})
    ds = experiments.load_svhn(tmp_path)
    assert ds.x_train.shape == (6, 32, 32, 3)
    assert ds.y_train[0] == 0  # SVHN stores the digit 0 as label 10


def test_digits_ships_with_scikit_learn():
    ds = experiments.load_digits(test_fraction=0.25)
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == 1797
    assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1


def test_superclassing(rng):
    labels = rng.integers(0, 10, 1000)
    g = experiments.superclass(labels, 2, key=0)
    assert set(np.unique(g)) == {0, 1}
    # a function of the original class, balanced: 5 classes per group
    mapping = {c: set(g[labels == c]) for c in range(10)}
    assert all(len(v) == 1 for v in mapping.values())
    assert sorted(np.bincount([v.pop() for v in mapping.values()])) == [5, 5]
    np.testing.assert_array_equal(experiments.superclass(labels, 2, key=0), g)  # same key, same map
    np.testing.assert_array_equal(experiments.superclass(labels, 10, mapping=np.arange(10)), labels)
    with pytest.raises(ValueError, match="n_groups must be an integer in"):
        experiments.superclass(labels, 11)


def test_input_noise_and_standardisation(rng):
    x = rng.standard_normal((4000, 3)) * 5 + 2
    xs = experiments.standardize(x)
    np.testing.assert_allclose(xs.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(xs.std(0), 1, rtol=1e-12)
    noisy = experiments.add_input_noise(xs, 0.3, key=1)
    assert (noisy - xs).std() == pytest.approx(0.3, rel=0.05)
    np.testing.assert_array_equal(noisy, experiments.add_input_noise(xs, 0.3, key=1))
    with pytest.raises(ValueError, match="scale must be finite and >= 0"):
        experiments.add_input_noise(xs, -1.0, key=0)


def test_nested_subsets(rng):
    subsets = experiments.nested_subsets(500, [10, 50, 200], key=3)
    for a, b in zip(subsets, subsets[1:]):
        np.testing.assert_array_equal(b[: len(a)], a)
    assert len(set(subsets[-1])) == 200


def test_embeddings_from_npy_netcdf_and_zarr(tmp_path, rng):
    import xarray as xr

    E = rng.standard_normal((6, 4))
    np.save(tmp_path / "e.npy", E)
    xr.Dataset({"emb": (("n", "f"), E)}).to_netcdf(tmp_path / "e.nc")
    xr.Dataset({"emb": (("n", "f"), E)}).to_zarr(tmp_path / "e.zarr", zarr_format=2, consolidated=False)
    for name in ("e.npy", "e.nc", "e.zarr"):
        np.testing.assert_allclose(experiments.load_embeddings(tmp_path / name), E)


def write_cifar10_py(root, batches, protocol=pickle.HIGHEST_PROTOCOL, str_keys=False):
    p = root / "cifar-10-batches-py"
    p.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i + 1}" for i in range(5)] + ["test_batch"]
    for name, (data, labels) in zip(names, batches):
        key = (lambda k: k) if str_keys else (lambda k: k.encode())
        with open(p / name, "wb") as f:
            pickle.dump({key("data"): data, key("labels"): labels, key("batch_label"): name}, f, protocol=protocol)
    return p


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_python_batches_resaved_by_python3_load(tmp_path, rng, protocol):
    # Protocol 2 from Python 3 writes every bytes object as _codecs.encode(text, "latin1");
    # protocol 5 writes arrays through numpy's _frombuffer. Both are legitimate CIFAR files.
    records = [cifar_records(rng, 3, 1) for _ in range(6)]
    batches = [(pixels, np.asarray(labels[:, 0], np.int64)) for labels, pixels, _ in records]
    write_cifar10_py(tmp_path, batches, protocol=protocol, str_keys=protocol == 4)
    ds = experiments.load_cifar10(tmp_path)
    assert ds.x_train.shape == (15, 32, 32, 3)
    np.testing.assert_array_equal(ds.y_train, np.concatenate([b[1] for b in batches[:5]]))
    expected = records[5][1].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(ds.x_test * 255.0, expected, atol=1e-4)


class _Exploit:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("payload", [
    _Exploit(__import__("os").system, "touch pwned"),
    _Exploit(eval, "1 + 1"),
    _Exploit(__import__("codecs").encode, "x", "rot13"),      # a codec other than latin1
    _Exploit(__import__("_codecs").encode, b"x", "zlib"),   # bytes through a compressing codec
    _Exploit(__import__("copyreg")._reconstructor, object, object, None),
    _Exploit(np.load, "weights.npy", None, True),               # numpy, but not an allowed global
], ids=["os.system", "eval", "codecs.encode-rot13", "_codecs.encode-zlib", "copyreg", "numpy.load"])
def test_every_malicious_cifar_payload_is_refused(tmp_path, payload):
    p = tmp_path / "cifar-10-batches-py"
    p.mkdir()
    with open(p / "data_batch_1", "wb") as f:
        pickle.dump({b"data": payload, b"labels": [0]}, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        experiments.load_cifar10(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_cifar_labels_are_validated(tmp_path, rng):
    records = [cifar_records(rng, 3, 1) for _ in range(6)]
    good = [(pixels, labels[:, 0].tolist()) for labels, pixels, _ in records]
    bad_value = list(good)
    bad_value[2] = (good[2][0], [1, 999, 2])
    write_cifar10_py(tmp_path / "a", bad_value)
    with pytest.raises(ValueError, match=r"data_batch_3 'labels': labels must be in \[0, 9\], found 999"):
        experiments.load_cifar10(tmp_path / "a")
    bad_count = list(good)
    bad_count[5] = (good[5][0], [0, 1])
    write_cifar10_py(tmp_path / "b", bad_count)
    with pytest.raises(ValueError, match="test_batch 'labels': 2 labels for 3 images"):
        experiments.load_cifar10(tmp_path / "b")
    bad_shape = list(good)
    bad_shape[0] = (good[0][0][:, :100], good[0][1])
    write_cifar10_py(tmp_path / "c", bad_shape)
    with pytest.raises(ValueError, match=r"shape \(n, 3072\)"):
        experiments.load_cifar10(tmp_path / "c")
    (tmp_path / "d" / "cifar-10-batches-py").mkdir(parents=True)
    (tmp_path / "d" / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"")
    with pytest.raises(ValueError, match="not a CIFAR python batch"):
        experiments.load_cifar10(tmp_path / "d")


def test_cifar_binary_labels_are_validated(tmp_path, rng):
    b = tmp_path / "cifar-10-batches-bin"
    b.mkdir()
    for i in range(6):
        _, _, rec = cifar_records(rng, 3, 1)
        if i == 1:
            rec[2, 0] = 200
        rec.tofile(b / (f"data_batch_{i + 1}.bin" if i < 5 else "test_batch.bin"))
    with pytest.raises(ValueError, match=r"data_batch_2.bin label byte 0: labels must be in \[0, 9\], found 200"):
        experiments.load_cifar10(tmp_path)
    d = tmp_path / "c100" / "cifar-100-binary"
    d.mkdir(parents=True)
    _, _, rec = cifar_records(rng, 4, 2)
    rec.tofile(d / "test.bin")
    rec[0, 0] = 25  # coarse labels are < 20 (fine ones < 100)
    rec.tofile(d / "train.bin")
    with pytest.raises(ValueError, match=r"train.bin label byte 0: labels must be in \[0, 19\], found 25"):
        experiments.load_cifar100(tmp_path / "c100", label="fine")
