"""Dense task kinds: losses and split-level metrics against plain numpy on random predictions,
evaluated in chunks; chunked evaluation of the other kinds equals the whole-split one."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.data.base import Split, classification, depth, normal, regression, segmentation
from harness.models.base import Model
from harness.train import dense
from harness.train import losses as L
from harness.train.evaluation import evaluate, evaluate_in_chunks

N, H, W, C = 7, 5, 6, 4
SEG, DEPTH, NORMAL = segmentation("seg", C, (H, W)), depth("depth", (H, W)), normal("normal", (H, W))


def random_split(seed: int = 0):
    """Targets with ignored / invalid pixels, and one class (3) never labelled nor predicted
    (left out of mIoU), with outputs for every row."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, size=(N, H, W))
    label[rng.uniform(size=label.shape) < 0.2] = -1
    d = rng.uniform(0.5, 4.0, size=(N, H, W, 1))
    d[rng.uniform(size=(N, H, W)) < 0.2] = 0
    n = rng.normal(size=(N, H, W, 3))
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[rng.uniform(size=(N, H, W)) < 0.2] = 0
    logits = rng.normal(size=(N, H, W, C))
    logits[..., 3] = -10.0
    outputs = {"seg": logits, "depth": rng.uniform(0.5, 4.0, size=(N, H, W, 1)), "normal": rng.normal(size=(N, H, W, 3))}
    ys = {"seg": label.astype(np.int32), "depth": d, "normal": n}
    return ({k: v.astype(np.float32) for k, v in outputs.items()},
            {k: v if v.dtype == np.int32 else v.astype(np.float32) for k, v in ys.items()})


def lookup_model(outputs: dict) -> Model:
    """A 'model' whose output for row i is outputs[task][i]: x holds the row index."""
    def heads(task_params, z):
        rows = z[:, 0].astype(jnp.int32)
        return {name: jnp.asarray(o)[rows] for name, o in outputs.items()}
    return Model(lambda key: {"shared": {}, "tasks": {}}, lambda params, x: x, heads)


def numpy_metrics(out: dict, y: dict) -> dict:
    """The reference code's metrics, written out with numpy over the whole split."""
    lab, pred = y["seg"], out["seg"].argmax(-1)
    keep = lab >= 0
    conf = np.bincount(C * lab[keep] + pred[keep], minlength=C * C).reshape(C, C)
    inter, union = np.diag(conf), conf.sum(0) + conf.sum(1) - np.diag(conf)
    iou = inter[union > 0] / union[union > 0]
    valid_d = y["depth"][..., 0] != 0
    err = np.abs(out["depth"] - y["depth"])[..., 0][valid_d]
    valid_n = np.any(y["normal"] != 0, axis=-1)
    p = out["normal"] / np.linalg.norm(out["normal"], axis=-1, keepdims=True)
    ang = np.degrees(np.arccos(np.clip(np.sum(p * y["normal"], -1), -1, 1)))[valid_n]
    return {"seg.miou": iou.mean(), "seg.pixel_acc": inter.sum() / conf.sum(),
            "depth.abs_err": err.mean(), "depth.rel_err": (err / y["depth"][..., 0][valid_d]).mean(),
            "normal.mean_angle": ang.mean(), "normal.median_angle": np.median(ang),
            "normal.within_11.25": np.mean(ang < 11.25), "normal.within_22.5": np.mean(ang < 22.5),
            "normal.within_30": np.mean(ang < 30)}


@pytest.mark.parametrize("chunk", [1, 3, 7, 50])
def test_metrics_over_chunks_equal_numpy_over_the_whole_split(chunk):
    out, y = random_split()
    tasks = (SEG, DEPTH, NORMAL)
    split = Split(jnp.arange(N, dtype=jnp.float32)[:, None], {k: jnp.asarray(v) for k, v in y.items()})
    metrics, _, secondary = jax.jit(lambda s: evaluate_in_chunks(lookup_model(out), tasks, {"tasks": {}}, s, {}, chunk))(split)
    got = {**{f"{t.name}.{t.metric}": float(metrics[j]) for j, t in enumerate(tasks)},
           **{k: float(v) for k, v in secondary.items()}}
    expected = numpy_metrics(out, y)
    assert set(got) == set(expected)
    for name, value in expected.items():
        # The median comes from a histogram of 0.01-degree bins.
        atol = 180 / dense.ANGLE_BINS if name == "normal.median_angle" else 1e-5
        assert got[name] == pytest.approx(value, rel=1e-5, abs=atol), name


def test_miou_leaves_out_classes_absent_from_both_and_counts_the_whole_split():
    """Class 2 is neither labelled nor predicted: left out. Two batches' pooled counts give the
    split's mIoU, not the mean of the batches' mIoU."""
    conf_a = jnp.asarray([[3, 1, 0], [0, 0, 0], [0, 0, 0]])  # class 0: 3 / 4, class 1: 0 / 1
    conf_b = jnp.asarray([[0, 0, 0], [2, 2, 0], [0, 0, 0]])  # class 0: 0 / 2, class 1: 2 / 4
    assert float(dense.miou(conf_a)) == pytest.approx((3 / 4 + 0) / 2)
    assert float(dense.miou(conf_b)) == pytest.approx((0 + 2 / 4) / 2)
    assert float(dense.miou(conf_a + conf_b)) == pytest.approx((3 / 6 + 2 / 5) / 2)


def test_losses_equal_numpy():
    out, y = random_split(1)
    lab = y["seg"]
    logp = out["seg"] - np.log(np.exp(out["seg"]).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, np.maximum(lab, 0)[..., None], -1)[..., 0][lab >= 0].mean()
    valid = y["depth"][..., 0] != 0
    l1 = np.abs(out["depth"] - y["depth"])[..., 0][valid].mean()
    valid = np.any(y["normal"] != 0, -1)
    p = out["normal"] / np.linalg.norm(out["normal"], axis=-1, keepdims=True)
    cos = (1 - np.sum(p * y["normal"], -1))[valid].mean()
    for spec, expected in ((SEG, ce), (DEPTH, l1), (NORMAL, cos)):
        got = L.loss(spec, jnp.asarray(out[spec.name]), jnp.asarray(y[spec.name]))
        assert float(got) == pytest.approx(expected, rel=1e-5)


def test_normal_loss_has_finite_gradients_at_a_zero_prediction():
    y = jnp.asarray(random_split()[1]["normal"])
    g = jax.grad(lambda o: L.loss(NORMAL, o, y))(jnp.zeros(y.shape))
    assert bool(jnp.all(jnp.isfinite(g)))


def test_chunked_evaluation_of_other_kinds_equals_the_whole_split():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(11, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    label = rng.integers(0, 3, size=11)
    label[2] = -1
    target = rng.normal(size=(11, 1))
    target[4] = np.nan
    tasks = (classification("c", 3, missing_labels=True), regression("r"), regression("m", missing_labels=True))
    split = Split(x, {"c": jnp.asarray(label, jnp.int32), "r": jnp.asarray(rng.normal(size=(11, 1)), jnp.float32),
                      "m": jnp.asarray(target, jnp.float32)})
    model = Model(lambda key: {}, lambda params, x: x @ w,
                  lambda tp, z: {"c": z[:, :3], "r": z[:, 3:], "m": z[:, 3:] * 2})
    scales = L.target_scales(tasks, split.y)
    whole_m, whole_l, whole_s = evaluate(model, tasks, {"tasks": {}}, split, scales)
    assert set(whole_s) == {"c.macro_f1", "r.mae", "m.mae"}
    for size in (4, 11):  # 4: a last chunk that overlaps rows already counted
        m, loss, secondary = evaluate_in_chunks(model, tasks, {"tasks": {}}, split, scales, size)
        np.testing.assert_allclose(m, whole_m, rtol=1e-5)
        np.testing.assert_allclose(loss, whole_l, rtol=1e-5)
        assert set(secondary) == set(whole_s)
        for name, value in secondary.items():
            np.testing.assert_allclose(value, whole_s[name], rtol=1e-5)
