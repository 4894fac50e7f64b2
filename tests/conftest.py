import atexit
import os
import shutil
import tempfile

# Meshes in tests run on 8 virtual CPU devices; this must precede importing jax.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

# What lpjax keeps between runs (tuned scoring budgets, compiled steps) goes
# to a directory of this test process, which launched runs inherit, not to
# the user's ~/.cache/lpjax.
_CACHE = tempfile.mkdtemp(prefix="lpjax-test-cache-")
os.environ.setdefault("LPJAX_CACHE_DIR", _CACHE)
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.path.join(REPO, "..", "shared"))
