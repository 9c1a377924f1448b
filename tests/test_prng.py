"""The host threefry (experiments._prng) against jax.random itself: same keys, same bits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import _prng


def data(k):
    return np.asarray(jax.random.key_data(k))


@pytest.mark.parametrize("seed", [0, 1, 2, 7, 12345, 2**31 - 1])
def test_key_split_fold_bits_match_jax(seed):
    k = jax.random.key(seed)
    assert np.array_equal(data(_prng.key(seed)), data(k))
    for num in (1, 2, 3, 5, 8):
        ours = _prng.split(k, num)
        theirs = jax.random.split(k, num)
        assert len(ours) == num
        assert np.array_equal(np.stack([data(o) for o in ours]), data(theirs))
    for d in (0, 1, 7, 2**31 - 1, 2**32 - 1):
        assert np.array_equal(data(_prng.fold_in(k, d)), data(jax.random.fold_in(k, d)))
    for n in (1, 4, 5, 64):
        assert np.array_equal(_prng.bits32(k, n), np.asarray(jax.random.bits(k, (n,), jnp.uint32)))


def test_chained_derivations_match_jax():
    """Keys derived from derived keys (the pattern of a unit: seed -> fold_in -> split -> bits)."""
    rng = np.random.default_rng(0)
    for seed, d in zip(rng.integers(0, 2**31, 20), rng.integers(0, 2**32, 20)):
        ours = _prng.split(_prng.fold_in(_prng.key(int(seed)), int(d)), 3)[2]
        theirs = jax.random.split(jax.random.fold_in(jax.random.key(int(seed)), int(d)), 3)[2]
        assert np.array_equal(data(ours), data(theirs))
        assert np.array_equal(_prng.bits32(ours, 4), np.asarray(jax.random.bits(theirs, (4,), jnp.uint32)))


def test_other_keys_are_handed_to_jax():
    """Seeds outside [0, 2**31) and non-threefry keys go through jax.random unchanged."""
    for seed in (-1, 2**31, 2**40):
        try:
            expected = data(jax.random.key(seed))
        except (OverflowError, ValueError) as exc:
            with pytest.raises(type(exc)):
                _prng.key(seed)
            continue
        assert np.array_equal(data(_prng.key(seed)), expected)
    k = jax.random.key(3, impl="rbg")
    a, b = _prng.split(k)
    assert np.array_equal(data(b), data(jax.random.split(k)[1]))
    assert np.array_equal(_prng.bits32(k, 4), np.asarray(jax.random.bits(k, (4,), jnp.uint32)))


def test_no_compilation_on_the_host_path():
    """The point of the module: deriving keys compiles nothing (a fresh process would pay ~0.3 s)."""
    jax.clear_caches()
    k = _prng.key(11)
    with jax.log_compiles(True):
        import logging

        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logging.getLogger("jax").addHandler(handler)
        try:
            _prng.bits32(_prng.split(_prng.fold_in(k, 5), 2)[1], 4)
        finally:
            logging.getLogger("jax").removeHandler(handler)
    assert not [r for r in records if "Compiling" in r.getMessage()]


def test_edge_inputs_behave_as_jax_random():
    """Inputs the host path does not take go to jax.random with their own type: jax's answer
    (or its error), never a silently different key."""
    from scaling import enable_x64

    with enable_x64():
        assert np.array_equal(data(_prng.key(np.int32(-1))), data(jax.random.key(np.int32(-1))))
    assert np.array_equal(data(_prng.key(True)), data(jax.random.key(True)))
    assert np.array_equal(data(_prng.key(np.uint64(2**63))), data(jax.random.key(np.uint64(2**63))))
    k = jax.random.key(4)
    assert np.array_equal(data(_prng.fold_in(k, np.int64(-5))), data(jax.random.fold_in(k, np.int64(-5))))
    assert np.array_equal(np.stack([data(a) for a in _prng.split(k, (3,))]), data(jax.random.split(k, (3,))))
    for bad in (2.5,):
        with pytest.raises(TypeError):
            jax.random.split(k, bad)
        with pytest.raises(TypeError):
            _prng.split(k, bad)
    raw = jax.random.PRNGKey(3)  # a legacy raw key passes through unchanged
    assert _prng.key(raw) is raw
