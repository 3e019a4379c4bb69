"""Encoder weights from a file: `model.pretrained=<file.npz>` for model=resnet.

The file holds one array per encoder parameter, named by its path in the harness's encoder
(`stages/<i>/...`, i = 0 the stem, 1..4 the stages), e.g. `stages/0/conv/kernel`,
`stages/1/blocks/0/conv1/kernel`, `stages/1/blocks/0/norm1/scale`,
`stages/2/blocks/0/down_conv/kernel`. Every encoder parameter must be there with its shape; the
decoders keep their initialisation.

`from_torchvision(state_dict)` converts a torchvision ResNet state dict (names `conv1.weight`,
`bn1.weight`, `layer1.0.conv1.weight`, `layer1.0.bn1.bias`, `layer2.0.downsample.0.weight`, ...;
values as numpy arrays, e.g. `{k: v.numpy() for k, v in torch_model.state_dict().items()}`)
into that naming: convolution kernels (out, in, kh, kw) become (kh, kw, in, out), BatchNorm's
weight and bias become GroupNorm's scale and bias. BatchNorm's running statistics and the
classifier (`fc.*`) are dropped: the harness normalises with GroupNorm (harness.models.resnet),
so ImageNet weights are a starting point for fine-tuning, not the torchvision network itself.

    from harness.models.pretrained import from_torchvision, save
    save("resnet50.npz", from_torchvision(state_dict))
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Mapping

import jax
import numpy as np

from harness.errors import bad

TORCH_NAME = re.compile(r"^(?:(conv1|bn1)|layer([1-4])\.(\d+)\.(conv\d|bn\d|downsample\.[01]))\.(weight|bias)$")
DROPPED = re.compile(r"(running_mean|running_var|num_batches_tracked)$|^fc\.")


def _torch_name(name: str) -> str | None:
    """The harness path of a torchvision parameter name; None for a dropped one."""
    if DROPPED.search(name):
        return None
    m = TORCH_NAME.match(name)
    if m is None:
        raise ValueError(f"{name}: not a torchvision ResNet parameter name")
    stem, stage, block, layer, kind = m.groups()
    if stem:
        prefix, layer = "stages/0", {"conv1": "conv", "bn1": "norm"}[stem]
    else:
        prefix = f"stages/{stage}/blocks/{block}"
        layer = {"downsample.0": "down_conv", "downsample.1": "down_norm"}.get(layer, layer)
        layer = layer.replace("bn", "norm")
    if "conv" in layer:
        if kind != "weight":
            raise ValueError(f"{name}: the convolutions have no bias")
        return f"{prefix}/{layer}/kernel"
    return f"{prefix}/{layer}/{'scale' if kind == 'weight' else 'bias'}"


def from_torchvision(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Arrays named as the harness's encoder from a torchvision ResNet state dict."""
    out = {}
    for name, value in state_dict.items():
        path = _torch_name(name)
        if path is None:
            continue
        value = np.asarray(value, dtype=np.float32)
        out[path] = value.transpose(2, 3, 1, 0) if path.endswith("kernel") else value
    return out


def save(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    np.savez(path, **arrays)


def flatten(tree: Any) -> dict[str, Any]:
    """A params tree as {"a/b/c": leaf}."""
    def name(path) -> str:
        return "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)
    return {name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _unflatten_like(tree: Any, flat: Mapping[str, Any], prefix: str) -> Any:
    paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
    names = ["/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path) for path, _ in paths]
    return jax.tree_util.tree_unflatten(treedef, [flat[f"{prefix}{n}"] for n in names])


def read(path: str, encoder_shapes: Any) -> dict[str, np.ndarray]:
    """The file's arrays, checked against the encoder's parameter shapes; raises ConfigError."""
    full = os.path.expanduser(path)
    if not os.path.isfile(full):
        raise bad("model.pretrained", path, "an existing .npz file of encoder weights")
    try:
        with np.load(full) as f:
            arrays = {k: np.asarray(f[k], np.float32) for k in f.files}
    except (ValueError, OSError) as err:
        raise bad("model.pretrained", path, f"a readable .npz file ({type(err).__name__})") from None
    for name, shape in flatten(encoder_shapes).items():
        if name not in arrays:
            raise bad("model.pretrained", path, f"has no {name} (this model.depth and model.width's encoder)")
        if arrays[name].shape != tuple(shape.shape):
            raise bad("model.pretrained", path,
                      f"{name} has shape {arrays[name].shape}, the model's {tuple(shape.shape)}")
    return arrays


def loader(path: str | None, encoder_shapes: Callable[[], Any]) -> Callable[[dict, int], dict]:
    """(params, shared_depth) -> params with every encoder stage (shared, or each task's copy)
    from the file; the identity without a file. `encoder_shapes()`: the whole encoder's
    parameter shapes, to check the file against."""
    if path is None:
        return lambda params, k: params
    arrays = read(path, encoder_shapes())

    def load(params: dict, k: int) -> dict:
        shared = dict(params["shared"])
        if k > 0:
            shared["stages"] = {i: _unflatten_like(params["shared"]["stages"][i], arrays, f"stages/{i}/")
                                for i in params["shared"]["stages"]}
        tasks = {}
        for name, tower in params["tasks"].items():
            if "encoder" not in tower:  # every stage is shared
                tasks[name] = tower
                continue
            stages = {i: _unflatten_like(s, arrays, f"stages/{k + i}/") for i, s in tower["encoder"]["stages"].items()}
            tasks[name] = {**tower, "encoder": {**tower["encoder"], "stages": stages}}
        return {"shared": shared, "tasks": tasks}

    return load
