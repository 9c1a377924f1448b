"""scaling.ensure_compilation_cache: where it puts JAX's persistent cache, and when it leaves it alone.
Each case runs in a fresh process (the cache is process-wide configuration)."""

import json
import os
import subprocess
import sys

SCRIPT = """
import json, jax, scaling
first = scaling.ensure_compilation_cache()
second = scaling.ensure_compilation_cache()
print(json.dumps([first, second, jax.config.jax_compilation_cache_dir,
                  jax.config.jax_persistent_cache_min_compile_time_secs]))
"""


def _run(env_extra, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("NST_JAX_CACHE", "NST_JAX_CACHE_DIR",
                                                             "JAX_COMPILATION_CACHE_DIR")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True,
                         cwd=tmp_path)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cache_goes_to_the_chosen_directory_once(tmp_path):
    target = tmp_path / "cache"
    first, second, configured, min_time = _run({"NST_JAX_CACHE_DIR": str(target)}, tmp_path)
    assert first == str(target) and configured == str(target) and target.is_dir()
    assert second is None  # set up once per process
    assert min_time == 0.2


def test_cache_can_be_turned_off(tmp_path):
    first, _, configured, _ = _run({"NST_JAX_CACHE": "off", "NST_JAX_CACHE_DIR": str(tmp_path / "c")}, tmp_path)
    assert first is None and not configured and not (tmp_path / "c").exists()


def test_a_users_own_cache_directory_is_left_alone(tmp_path):
    own = str(tmp_path / "own")
    _, _, configured, _ = _run({"JAX_COMPILATION_CACHE_DIR": own, "NST_JAX_CACHE_DIR": str(tmp_path / "c")},
                                   tmp_path)
    assert configured == own and not (tmp_path / "c").exists()
