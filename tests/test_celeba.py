"""data=celeba: a small fake copy in the published layout, written by the tests."""
from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from PIL import Image

from harness.data import celeba
from harness.data.base import select_tasks
from harness.errors import ConfigError

NAMES = ["5_o_Clock_Shadow", "Bald", "Smiling"]
# file -> (split, attribute values as the file writes them, RGB colour of the image)
ROWS = {
    "000001.jpg": ("0", [1, -1, 1], (250, 10, 10)),
    "000002.jpg": ("0", [-1, -1, 1], (10, 250, 10)),
    "000003.jpg": ("1", [-1, 1, -1], (10, 10, 250)),
    "000004.jpg": ("0", [1, 1, -1], (200, 200, 200)),
    "000005.jpg": ("2", [-1, -1, -1], (0, 0, 0)),
    "000006.jpg": ("2", [1, -1, 1], (128, 64, 32)),
}


def write_copy(root, rows=ROWS, names=NAMES):
    os.makedirs(root / "img_align_celeba", exist_ok=True)
    for name, (_, _, colour) in rows.items():
        # Solid colours survive JPEG compression and resizing almost exactly.
        Image.new("RGB", (12, 15), colour).save(root / "img_align_celeba" / name, quality=95)
    # The published files pad values with extra spaces; the reader splits on any whitespace.
    lines = [str(len(rows)), " ".join(names) + " "]
    lines += [f"{name} " + " ".join(f"{v:2d}" for v in values) for name, (_, values, _) in rows.items()]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text("".join(f"{n} {s}\n" for n, (s, _, _) in rows.items()))
    return root


@pytest.fixture
def copy(tmp_path):
    return write_copy(tmp_path / "celeba")


def test_reads_the_published_layout(copy):
    source = celeba.build(celeba.CelebAConfig(path=str(copy), image_size=4))
    assert source.task_names == tuple(NAMES) and source.input_dim == 4 * 4 * 3
    assert all((t.kind, t.output_size) == ("classification", 2) for t in source.tasks)
    dataset = source.generate(jax.random.key(0), {})
    for split, code in zip(dataset, "012"):
        files = [n for n, (s, _, _) in ROWS.items() if s == code]  # in the partition file's order
        assert split.x.shape == (len(files), 48) and split.x.dtype == np.float32
        for row, name in enumerate(files):
            _, values, colour = ROWS[name]
            for k, attr in enumerate(NAMES):
                assert int(split.y[attr][row]) == (1 if values[k] == 1 else 0)
            pixels = np.asarray(split.x[row]).reshape(4, 4, 3)
            np.testing.assert_allclose(pixels, np.broadcast_to(np.asarray(colour) / 255, (4, 4, 3)), atol=0.03)
    assert source.describe(dataset)["Bald_train_positive"] == pytest.approx(1 / 3)


def test_task_subset_and_row_limits(copy):
    cfg = celeba.CelebAConfig(path=str(copy), image_size=2, n_train=2, tasks=["Smiling", "Bald"])
    source = select_tasks(celeba.build(cfg), cfg.tasks)
    dataset = source.generate(jax.random.key(0), {})
    assert source.task_names == ("Smiling", "Bald")
    assert [len(s.x) for s in dataset] == [2, 1, 2]  # the first two train rows
    assert np.asarray(dataset.train.y["Smiling"]).tolist() == [1, 1]
    with pytest.raises(ConfigError, match=r"^data\.tasks='Young': this dataset's tasks are 5_o_Clock_Shadow"):
        select_tasks(celeba.build(cfg), ["Young"])


def broken(root, what):
    if what == "no attribute file":
        os.remove(root / "list_attr_celeba.txt")
    elif what == "no partition file":
        os.remove(root / "list_eval_partition.txt")
    elif what == "an image missing":
        os.remove(root / "img_align_celeba" / "000003.jpg")
    elif what == "a value of 0":
        text = (root / "list_attr_celeba.txt").read_text().replace("000002.jpg -1", "000002.jpg  0")
        (root / "list_attr_celeba.txt").write_text(text)
    elif what == "no count line":
        lines = (root / "list_attr_celeba.txt").read_text().splitlines()[1:]
        (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    elif what == "split 3":
        text = (root / "list_eval_partition.txt").read_text().replace("000005.jpg 2", "000005.jpg 3")
        (root / "list_eval_partition.txt").write_text(text)


@pytest.mark.parametrize("what, says", [
    ("no attribute file", "it has no list_attr_celeba.txt"),
    ("no partition file", "it has no list_eval_partition.txt"),
    ("an image missing", "it has no img_align_celeba/000003.jpg"),
    ("a value of 0", "list_attr_celeba.txt line 4: a file name then 3 values of 1 or -1"),
    ("no count line", "list_attr_celeba.txt must start with a count line, then the attribute names"),
    ("split 3", "list_eval_partition.txt line 5: a file name then 0, 1 or 2"),
])
def test_a_wrong_layout_is_one_line_naming_the_key_and_the_file(copy, what, says):
    broken(copy, what)
    with pytest.raises(ConfigError) as err:
        celeba.build(celeba.CelebAConfig(path=str(copy), image_size=2))
    message = str(err.value)
    assert message.startswith(f"data.path={str(copy)!r}: a CelebA directory") and "\n" not in message
    assert message.endswith(says)


def test_bad_numbers_name_their_key(copy):
    with pytest.raises(ConfigError, match=r"^data\.image_size=0: an integer >= 1$"):
        celeba.build(celeba.CelebAConfig(path=str(copy), image_size=0))
    with pytest.raises(ConfigError, match=r"^data\.n_val=0: "):
        celeba.build(celeba.CelebAConfig(path=str(copy), n_val=0))
