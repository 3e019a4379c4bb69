"""Test-session settings, made before jax is imported; subprocesses inherit them."""
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# Tests care about results, not kernel speed: XLA's cheapest backend optimisation compiles ~3x
# faster.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

# Many tests (and the command-line tests' subprocesses) compile the same small programs: one
# persistent compilation cache for the session compiles each of them once.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="harness-test-jax-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
