"""Models: pure init/apply over params pytrees; importing this package fills MODELS."""
from harness.models import base, hard  # noqa: F401
