import os
import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from memsweep import config
from memsweep.data import datasets
from memsweep.errors import ConfigError


def test_digits_subsets_are_nested_prefixes_and_disjoint_from_test():
    small = datasets.load(config.compose_run(["data.n=16"]).data)
    big = datasets.load(config.compose_run(["data.n=512"]).data)
    assert torch.equal(small.train_x, big.train_x[:16])           # the first n images in a fixed order
    assert small.train_x.shape == (16, 1, 8, 8) and small.test_x.shape == (500, 1, 8, 8)
    assert small.train_x.min() >= -1 and small.train_x.max() <= 1
    pool = datasets.load(config.compose_run(["data.n=1297"]).data).train_x   # every image a training subset can hold
    assert torch.cdist(big.test_x.flatten(1), pool.flatten(1)).min() > 0    # no test image is in it
    assert set(big.train_y.tolist()) == set(range(10))


def test_the_shipped_digits_are_scikit_learns():
    d = load_digits()
    with np.load(datasets.DIGITS) as shipped:
        assert np.array_equal(shipped["images"], d.images) and np.array_equal(shipped["target"], d.target)
    got = datasets.load(config.compose_run(["data.n=1297"]).data)
    want = torch.as_tensor(np.round(d.images * (255.0 / 16.0)).astype(np.uint8), dtype=torch.float32) / 127.5 - 1
    assert torch.equal(torch.cat([got.train_x, got.test_x])[:, 0], want)
    assert torch.equal(torch.cat([got.train_y, got.test_y]), torch.as_tensor(d.target))


def test_digits_offset_gives_disjoint_training_subsets():
    a = datasets.load(config.compose_run(["data.n=64"]).data)
    b = datasets.load(config.compose_run(["data.n=64", "data.offset=64"]).data)
    full = datasets.load(config.compose_run(["data.n=128"]).data)
    assert torch.equal(b.train_x, full.train_x[64:]) and not torch.equal(a.train_x, b.train_x)


def test_cifar10_reads_the_python_batch_format(tmp_path):
    datasets.make_synthetic_cifar(tmp_path, per_batch=20)
    cfg = config.compose_run(["data=cifar10", f"data.root={tmp_path}", "data.n=50", "data.test_size=10"])
    d = datasets.load(cfg.data)
    assert d.train_x.shape == (50, 3, 32, 32) and d.test_x.shape == (10, 3, 32, 32)
    # pixel (0, 0) of image 0, red channel, as written on disk
    raw = pickle.load(open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb"), encoding="bytes")
    assert d.train_x[0, 0, 0, 0].item() == pytest.approx(raw[b"data"][0][0] / 127.5 - 1)
    assert d.train_y[:20].tolist() == raw[b"labels"]


def test_cifar10_batches_cannot_run_code(tmp_path):
    datasets.make_synthetic_cifar(tmp_path, per_batch=20)
    evil = tmp_path / "cifar-10-batches-py" / "data_batch_1"

    class Evil:
        def __reduce__(self):
            return os.system, ("touch " + str(tmp_path / "pwned"),)
    evil.write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    cfg = config.compose_run(["data=cifar10", f"data.root={tmp_path}", "data.n=10", "data.test_size=10"])
    with pytest.raises(ConfigError, match="not a CIFAR-10 python batch.*refusing to load"):
        datasets.load(cfg.data)
    assert not (tmp_path / "pwned").exists()


def test_cifar10_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="data.root"):
        config.compose_run(["data=cifar10", f"data.root={tmp_path / 'nowhere'}"])


def test_synthetic_mixture_is_fixed_by_its_data_seed():
    a = datasets.load(config.compose_run(["data=synthetic", "seed=1"]).data)
    b = datasets.load(config.compose_run(["data=synthetic", "seed=2"]).data)
    assert torch.equal(a.train_x, b.train_x) and a.num_classes == 4
