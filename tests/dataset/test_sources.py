"""Data sources of ``explain_dataset``: every kind reads the values loaded directly, ranges
equal slices of the whole, image sources transpose to the model's layout, and the
fingerprint follows the content."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from crosslens.core.errors import InputError, OptionError
from crosslens.dataset.sources import Source, open_source


def _whole(source):
    return source.read(0, len(source))


def _check_ranges(source, x, y=None):
    """Every read of a range equals the slice of the whole (and of the expected data)."""
    n = len(source)
    for start, stop in ((0, n), (0, 1), (n - 1, n), (1, min(n, 4)), (n // 2, n), (2, 2)):
        got_x, got_y = source.read(start, stop)
        np.testing.assert_array_equal(got_x, x[start:stop])
        assert got_x.dtype == x.dtype and got_x.shape == (stop - start,) + source.sample_shape
        if y is None:
            assert got_y is None
        else:
            assert got_y.dtype == np.int64
            np.testing.assert_array_equal(got_y, y[start:stop])


def _json_roundtrip(source):
    info = source.describe()
    assert json.loads(json.dumps(info)) == info
    assert info["length"] == len(source) and info["fingerprint"].startswith("sha256:")
    return info


# -- arrays ----------------------------------------------------------------------------

def test_array_round_trips_as_given():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 3, 4, 4))  # float64 stays float64: the backend casts
    y = rng.integers(0, 5, size=10)
    source = open_source(x, layout="channels_last", labels=y)  # arrays are not transposed
    assert isinstance(source, Source)
    assert len(source) == 10 and source.sample_shape == (3, 4, 4)
    _check_ranges(source, x, y)
    batch, _ = source.read(0, 2)
    batch[:] = 0  # reads are copies: the user's data is untouched
    assert np.all(x[0] != 0)
    info = _json_roundtrip(source)
    assert info["kind"] == "array" and info["dtype"] == "float64" and info["labels"]
    assert info["sample_shape"] == [3, 4, 4]


def test_integer_token_arrays_stay_integer_and_unlabelled():
    tokens = np.arange(24, dtype=np.int32).reshape(6, 4)
    source = open_source(tokens)
    _check_ranges(source, tokens)
    assert source.class_names is None and source.describe()["dtype"] == "int32"


def test_npy_is_memory_mapped_and_npz_reads_x_and_y(tmp_path):
    x = np.random.default_rng(1).random((7, 2, 3)).astype(np.float32)
    y = np.arange(7) % 3
    np.save(tmp_path / "x.npy", x)
    source = open_source(tmp_path / "x.npy", labels=y)
    assert isinstance(source._x, np.memmap)
    _check_ranges(source, x, y)
    assert source.describe()["path"] == str((tmp_path / "x.npy").resolve())

    np.savez(tmp_path / "xy.npz", y=y, x=x)
    _check_ranges(open_source(str(tmp_path / "xy.npz")), x, y)
    np.savez(tmp_path / "first.npz", images=x)  # no 'x': the first array, no labels
    first = open_source(tmp_path / "first.npz")
    _check_ranges(first, x)
    assert first.describe()["options"]["x"] == "images"

    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    _check_ranges(open_source(mapped), x)
    # labels from a .npy path; False drops the npz's own labels
    np.save(tmp_path / "y.npy", y[::-1].copy())
    _check_ranges(open_source(tmp_path / "xy.npz", labels=tmp_path / "y.npy"), x, y[::-1])
    _check_ranges(open_source(tmp_path / "xy.npz", labels=False), x)


def test_fingerprint_is_stable_and_follows_the_data(tmp_path):
    x = np.random.default_rng(2).random((20, 5)).astype(np.float32)
    y = np.arange(20) % 2
    first = open_source(x, labels=y).describe()
    assert open_source(x.copy(), labels=y).describe() == first
    assert open_source(x, labels=y).describe()["fingerprint"] == first["fingerprint"]
    changed = x.copy()
    changed[0, 0] += 1.0
    assert open_source(changed, labels=y).describe()["fingerprint"] != first["fingerprint"]
    assert open_source(x, labels=1 - y).describe()["fingerprint"] != first["fingerprint"]
    assert open_source(x[:-1]).describe()["fingerprint"] != open_source(x).describe()[
        "fingerprint"]
    assert open_source(x.astype(np.float64)).describe()["fingerprint"] != open_source(
        x).describe()["fingerprint"]


def test_array_errors():
    x = np.zeros((4, 2))
    with pytest.raises(InputError, match="labels has 3 entries but .* 4 samples"):
        open_source(x, labels=[0, 1, 2])
    with pytest.raises(InputError, match="one-hot"):
        open_source(x, labels=np.eye(4))
    with pytest.raises(InputError, match="integer class ids"):
        open_source(x, labels=[0.5, 1, 2, 3])
    with pytest.raises(InputError, match="outside the 4 samples"):
        open_source(x).read(2, 5)
    with pytest.raises(OptionError, match="size= and preprocess= apply to image folders"):
        open_source(x, size=(8, 8))
    with pytest.raises(OptionError, match="layout must be"):
        open_source(x, layout="NCHW")
    with pytest.raises(InputError, match=r"cannot read a data set from list.*numpy array"):
        open_source([[1.0, 2.0]])
    with pytest.raises(InputError, match="numeric"):
        open_source(np.array(["a", "b"]))


def test_unknown_paths_and_files(tmp_path):
    with pytest.raises(InputError, match="no file or folder .*bundled set: 'digits'"):
        open_source(str(tmp_path / "missing"))
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(InputError, match=r"give a \.npy or \.npz file"):
        open_source(tmp_path / "data.csv")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="nothing is unpickled"):
        open_source(tmp_path / "objects.npy")


# -- image folders ---------------------------------------------------------------------

def _write_png(path, pixels):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _folder(tmp_path, sizes=((6, 5), (6, 5), (6, 5))):
    """cat/ (2 images) and dog/ (1 image, plus a non-image), with known pixels."""
    rng = np.random.default_rng(3)
    images = {}
    for name, (h, w) in zip(["cat/b.png", "cat/a.PNG", "dog/x.png"], sizes):
        images[name] = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        _write_png(tmp_path / "data" / name, images[name])
    (tmp_path / "data" / "dog" / "notes.txt").write_text("not an image")
    return tmp_path / "data", images


def test_folder_labels_class_names_and_values(tmp_path):
    root, images = _folder(tmp_path)
    source = open_source(root)  # one shared size: no size= needed
    assert source.class_names == ["cat", "dog"]
    assert len(source) == 3 and source.sample_shape == (6, 5, 3)
    order = ["cat/a.PNG", "cat/b.png", "dog/x.png"]  # files sorted in each class
    x = np.stack([images[name] for name in order]).astype(np.float32) / 255.0
    _check_ranges(source, x, np.array([0, 0, 1]))
    first = source.read(0, 1)[0]
    assert first.dtype == np.float32 and 0.0 <= first.min() and first.max() <= 1.0

    nchw = open_source(root, layout="channels_first")
    assert nchw.sample_shape == (3, 6, 5)
    _check_ranges(nchw, np.ascontiguousarray(x.transpose(0, 3, 1, 2)), np.array([0, 0, 1]))

    info = _json_roundtrip(nchw)
    assert info["kind"] == "folder" and info["class_names"] == ["cat", "dog"]
    assert info["options"] == {"layout": "channels_first", "size": None, "preprocess": None}


def test_folder_resize_and_preprocess(tmp_path):
    from PIL import Image

    from crosslens.cli import PREPROCESSING

    root, _ = _folder(tmp_path, sizes=((6, 5), (9, 4), (3, 3)))
    with pytest.raises(InputError, match=r"images differ in size .* pass size=\(height, width\)"):
        open_source(root)
    source = open_source(root, size=(4, 7), preprocess="imagenet", layout="channels_first")
    assert source.sample_shape == (3, 4, 7)
    mean, std = (np.asarray(v, np.float32) for v in PREPROCESSING["imagenet"])
    with Image.open(root / "cat" / "b.png") as image:
        expect = np.asarray(image.convert("RGB").resize((7, 4), Image.Resampling.BILINEAR),
                            np.float32) / 255.0
    got = source.read(1, 2)[0][0]
    np.testing.assert_allclose(got, ((expect - mean) / std).transpose(2, 0, 1), rtol=1e-6)
    square = open_source(root, size=5)
    assert square.sample_shape == (5, 5, 3)
    with pytest.raises(OptionError, match="preprocess must be one of"):
        open_source(root, size=5, preprocess="caffe")
    with pytest.raises(OptionError, match="size must be"):
        open_source(root, size=(0, 4))


def test_folder_of_images_only_and_fingerprint_follows_files(tmp_path):
    pixels = np.random.default_rng(4).integers(0, 256, size=(3, 4, 4, 3), dtype=np.uint8)
    for i, image in enumerate(pixels):
        _write_png(tmp_path / "flat" / f"{i}.png", image)
    source = open_source(tmp_path / "flat")
    assert source.class_names is None
    _check_ranges(source, pixels.astype(np.float32) / 255.0)
    before = source.describe()["fingerprint"]
    assert open_source(tmp_path / "flat").describe()["fingerprint"] == before
    os.rename(tmp_path / "flat" / "1.png", tmp_path / "flat" / "1b.png")  # same pixels
    assert open_source(tmp_path / "flat").describe()["fingerprint"] != before
    _write_png(tmp_path / "flat" / "0.png", 255 - pixels[0])
    assert open_source(tmp_path / "flat").describe()["fingerprint"] != before


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="is empty"):
        open_source(tmp_path / "empty")
    (tmp_path / "texts" / "a").mkdir(parents=True)
    (tmp_path / "texts" / "a" / "readme.txt").write_text("x")
    with pytest.raises(InputError, match=r"holds no images \(1 other files.*\.png"):
        open_source(tmp_path / "texts")
    _write_png(tmp_path / "mixed" / "cls" / "a.png", np.zeros((2, 2, 3), np.uint8))
    _write_png(tmp_path / "mixed" / "b.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(InputError, match="next to class folders"):
        open_source(tmp_path / "mixed")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read .*a.png.* as an image"):
        open_source(tmp_path / "broken", size=(2, 2)).read(0, 1)


# -- bundled sets ----------------------------------------------------------------------

def test_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    source = open_source("digits", layout="channels_last")
    assert len(source) == 1797 and source.sample_shape == (8, 8, 1)
    assert source.class_names == [str(d) for d in range(10)]
    x, y = source.read(5, 9)
    np.testing.assert_allclose(x[..., 0], digits.images[5:9] / 16.0, rtol=1e-6)
    np.testing.assert_array_equal(y, digits.target[5:9])
    assert x.dtype == np.float32
    nchw = open_source("digits", layout="channels_first")
    assert nchw.sample_shape == (1, 8, 8)
    np.testing.assert_array_equal(nchw.read(5, 9)[0], x.transpose(0, 3, 1, 2))
    assert nchw.describe()["kind"] == "bundled"
    with pytest.raises(OptionError, match="8x8"):
        open_source("digits", size=(16, 16))


def test_clever_hans_is_the_test_split():
    from crosslens.datasets import clever_hans

    data = clever_hans()
    source = open_source("clever_hans", layout="channels_first")
    assert len(source) == len(data.x_test) and source.sample_shape == (1, 16, 16)
    _check_ranges(source, data.x_test.transpose(0, 3, 1, 2), data.y_test)
    assert source.class_names == ["0-4", "5-9"]
    assert open_source("clever_hans", size=20).sample_shape == (20, 20, 1)


def test_photos():
    from crosslens.cli import PREPROCESSING
    from crosslens.zoo import load_image

    source = open_source("photos", size=(32, 32), layout="channels_first")
    assert len(source) == 2 and source.sample_shape == (3, 32, 32) and source.class_names is None
    expect = np.stack([load_image("chelsea", 32), load_image("coffee", 32)])
    _check_ranges(source, expect.transpose(0, 3, 1, 2))
    lite = open_source("photos", size=32, preprocess="lite").read(0, 1)[0]
    mean, std = (np.asarray(v, np.float32) for v in PREPROCESSING["lite"])
    np.testing.assert_allclose(lite, (expect[:1] - mean) / std, rtol=1e-5, atol=1e-6)
    with pytest.raises(OptionError, match="square"):
        open_source("photos", size=(32, 40))


# -- PyTorch ---------------------------------------------------------------------------

def test_torch_dataset_and_loader():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, Dataset, TensorDataset

    x = torch.arange(60, dtype=torch.float32).reshape(5, 3, 2, 2)
    y = torch.tensor([3, 1, 4, 1, 5])
    dataset = TensorDataset(x, y)
    source = open_source(dataset, layout="channels_last")  # no layout change for datasets
    assert source.sample_shape == (3, 2, 2)
    _check_ranges(source, x.numpy(), y.numpy())
    loader = DataLoader(dataset, batch_size=2, shuffle=True)
    from_loader = open_source(loader)
    _check_ranges(from_loader, x.numpy(), y.numpy())  # dataset order, not the loader's
    assert from_loader.describe()["options"] == {"from": "DataLoader"}
    assert from_loader.describe()["fingerprint"] == source.describe()["fingerprint"]

    class Plain(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.full((2,), float(i), dtype=torch.float64)

    _check_ranges(open_source(Plain()), np.repeat(np.arange(4.0), 2).reshape(4, 2))


def test_torch_errors_and_label_replacement():
    torch = pytest.importorskip("torch")
    from torch.utils.data import Dataset, IterableDataset, TensorDataset

    x = torch.zeros(4, 2)
    onehot = TensorDataset(x, torch.eye(4))
    with pytest.raises(InputError, match=r"TensorDataset\[0\] gives a label of shape \(4,\)"):
        open_source(onehot)
    _check_ranges(open_source(onehot, labels=False), x.numpy())
    _check_ranges(open_source(onehot, labels=[2, 2, 1, 0]), x.numpy(), np.array([2, 2, 1, 0]))

    class Stream(IterableDataset):
        def __iter__(self):
            yield x[0]

    with pytest.raises(InputError, match="IterableDataset.*no random access"):
        open_source(Stream())

    class Dicts(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"image": x[i], "label": i}

    with pytest.raises(InputError, match="is a dict"):
        open_source(Dicts())


# -- tf.data ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


def test_tf_unbatched_and_batched(tf):
    x = np.arange(10 * 4, dtype=np.float32).reshape(10, 2, 2)
    y = np.arange(10) % 3
    flat = tf.data.Dataset.from_tensor_slices((x, y))
    for ds in (flat, flat.batch(3), flat.batch(4).map(lambda a, b: (a, b)).prefetch(1)):
        source = open_source(ds, layout="channels_first")  # no layout change
        assert len(source) == 10 and source.sample_shape == (2, 2)
        _check_ranges(source, x, y)
        # consecutive reads (one iterator) equal the random-access ones
        parts = [source.read(a, min(a + 3, 10)) for a in range(0, 10, 3)]
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)
        _json_roundtrip(source)
    dropped = open_source(tf.data.Dataset.from_tensor_slices(x).batch(4, drop_remainder=True))
    assert len(dropped) == 8 and open_source(flat.batch(3)).describe()["options"]["batched"]
    _check_ranges(dropped, x[:8])
    # length of a batched pipeline tf.data cannot see through: the last batch is read
    sized = flat.batch(3).apply(tf.data.experimental.assert_cardinality(4))
    _check_ranges(open_source(sized), x, y)


def test_tf_errors(tf):
    x = np.zeros((6, 2), np.float32)
    flat = tf.data.Dataset.from_tensor_slices(x)
    filtered = flat.filter(lambda a: True)
    with pytest.raises(InputError, match=r"length is unknown.*assert_cardinality\(n\)"):
        open_source(filtered)
    _check_ranges(open_source(filtered.apply(tf.data.experimental.assert_cardinality(6))), x)
    with pytest.raises(InputError, match="infinite"):
        open_source(flat.repeat())
    with pytest.raises(InputError, match="shuffles"):
        open_source(flat.shuffle(6, seed=1))
    seeded = open_source(flat.shuffle(6, seed=1, reshuffle_each_iteration=False))
    assert len(seeded) == 6
    onehot = tf.data.Dataset.from_tensor_slices((x, np.eye(6, dtype=np.float32)))
    with pytest.raises(InputError, match="not integer class ids.*tf.argmax"):
        open_source(onehot)
    _check_ranges(open_source(onehot, labels=False), x)
    dicts = tf.data.Dataset.from_tensor_slices({"image": x, "label": np.arange(6)})
    with pytest.raises(InputError, match="dicts"):
        open_source(dicts)
