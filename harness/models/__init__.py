"""Models: pure init/apply over params pytrees; importing this package fills MODELS."""
from harness.models import base, conv, cross_stitch, hard, lenet, moe, resnet, soft, tree  # noqa: F401
