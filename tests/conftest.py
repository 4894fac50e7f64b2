import atexit
import os
import shutil
import tempfile
import time

# Meshes in tests run on 8 virtual CPU devices; this must precede importing jax.
# Tests compile with LLVM's optimization level 0 (XLA's default is 3): the same
# programs, half the compile time, slower kernels; results are checked against
# references with tolerances. tests/integration/test_launch.py's runs (and the
# benchmarks) compile as users' runs do.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {TEST_XLA_FLAGS}")

# What lpjax keeps between runs (tuned scoring budgets, compiled steps) goes
# to a directory of this test process, which launched runs inherit, not to
# the user's ~/.cache/lpjax.
_CACHE = tempfile.mkdtemp(prefix="lpjax-test-cache-")
os.environ.setdefault("LPJAX_CACHE_DIR", _CACHE)
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

# One persistent compilation cache for the whole session, <LPJAX_CACHE_DIR>/xla
# (xdist's workers inherit the directory from the process that starts them):
# every launched run turns it on itself (lpjax.launch), and the test processes
# turn it on here for their in-process runs, so a step compiled once (same
# program, shapes and devices) is loaded in every later test, worker and launch.
from lpjax import tuning  # noqa: E402  (after XLA_FLAGS: imports jax without starting a backend)

tuning.enable_compilation_cache()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.path.join(REPO, "..", "shared"))


def launch_env(**extra: str) -> dict:
    """The environment of a run a test launches: one CPU device, as a user's
    plain run (no virtual devices), compiled with TEST_XLA_FLAGS; ``extra``
    on top."""
    return {**os.environ, "XLA_FLAGS": TEST_XLA_FLAGS, **extra}


def wait_for_committed_checkpoint(proc, ckpt: str, timeout: float) -> None:
    """Wait until an Orbax step under ``ckpt`` is committed (or ``proc`` ends,
    or ``timeout`` seconds pass): the moment to kill a run mid-training."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        steps = [d for d in (os.listdir(ckpt) if os.path.isdir(ckpt) else []) if d.isdigit()]
        if any(os.path.exists(os.path.join(ckpt, d, "commit_success.txt")) for d in steps):
            return
        time.sleep(0.05)
