"""Models: pure init/apply over params pytrees; importing this package fills MODELS."""
from harness.models import base, conv, cross_stitch, hard, moe, soft, tree  # noqa: F401
