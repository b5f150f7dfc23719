"""The reference-feature cache: one process computes, the others wait and reuse; invalidated by data or
extractor changes; shared by the runs of a sweep."""
import hashlib
import multiprocessing
import os
import time

import pytest
import torch
from omegaconf import OmegaConf

from memsweep import config
from memsweep.store.cache import Cache
from memsweep.data.datasets import load
from memsweep.eval.evaluator import Evaluator, References
from memsweep.eval import features
from memsweep.metrics.fid import frechet_distance

from conftest import FAST


pytestmark = pytest.mark.usefixtures("one_thread")

def _writer(root, go, out):
    """One of several processes asking for the same missing value at the same time."""
    while not go.exists():  # start together
        time.sleep(0.005)

    def compute():
        (root / f"computed.{os.getpid()}").touch()
        time.sleep(1.0)  # long enough for the others to arrive while this one computes
        return {"features": torch.randn(500, 64, generator=torch.Generator().manual_seed(os.getpid()))}
    value = Cache(root / "cache").get("features", {"dataset": "x", "split": "train"}, compute)
    out.put(hashlib.sha256(value["features"].numpy().tobytes()).hexdigest())


def test_concurrent_writers_compute_once_and_read_identical_features(tmp_path):
    ctx = multiprocessing.get_context("fork")  # separate processes, each with its own flock file descriptions
    go, out = tmp_path / "go", ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(tmp_path, go, out)) for _ in range(4)]
    for p in procs:
        p.start()
    time.sleep(0.3)
    go.touch()
    hashes = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    assert len(list(tmp_path.glob("computed.*"))) == 1  # exactly one process computed
    assert len(set(hashes)) == 1 and len(hashes[0]) == 64  # and all got its features
    events = sorted(e["event"] for e in Cache(tmp_path / "cache").read_log())
    assert events.count("computed") == 1 and events.count("waited") >= 1 and len(events) == 4
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # no half-written file left
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 1


def test_a_value_left_half_written_by_a_killed_writer_is_ignored(tmp_path):
    cache = Cache(tmp_path)
    parts = {"dataset": "x"}
    cache.get("features", parts, lambda: {"v": torch.ones(3)})
    path = next((tmp_path / "features").glob("*.pt"))
    stale = path.with_name(f".{path.stem}.99999.tmp")
    stale.write_bytes(b"torn")
    path.write_bytes(path.read_bytes()[:20])  # a corrupt value (e.g. a disk error) is recomputed, not trusted
    value = Cache(tmp_path).get("features", parts, lambda: {"v": torch.full((3,), 2.0)})
    assert torch.equal(value["v"], torch.full((3,), 2.0)) and not stale.exists()


def digits(n=32):
    cfg = OmegaConf.create({"name": "digits", "n": n, "offset": 0, "test_size": 100})
    return cfg, load(cfg)


def computed(cache):
    return [e["what"] for e in cache.read_log() if e["event"] == "computed"]


def test_changed_data_or_extractor_recomputes(tmp_path):
    cfg, data = digits()
    cache = Cache(tmp_path / "cache")
    torch.manual_seed(0)
    net = torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16)))
    net.save(str(tmp_path / "net.pt"))
    space = features.build(f"torchscript:{tmp_path / 'net.pt'}")
    a = References(data, cfg, Cache(tmp_path / "cache"), "cpu").features(space, "train")
    assert torch.allclose(a, space(data.train_x))
    References(data, cfg, Cache(tmp_path / "cache"), "cpu").features(space, "train")
    assert len(computed(cache)) == 1  # the same data and extractor: reused
    data.train_x[0, 0, 0, 0] += 0.5  # one pixel of one training image changes
    b = References(data, cfg, Cache(tmp_path / "cache"), "cpu").features(space, "train")
    assert len(computed(cache)) == 2 and not torch.allclose(a, b)
    with torch.no_grad():  # the extractor's weights change, under the same file name
        net[1].weight.mul_(2)
    net.save(str(tmp_path / "net.pt"))
    space2 = features.build(f"torchscript:{tmp_path / 'net.pt'}")
    c = References(data, cfg, Cache(tmp_path / "cache"), "cpu").features(space2, "train")
    assert len(computed(cache)) == 3 and torch.allclose(c, space2(data.train_x))


def test_runs_of_a_sweep_share_the_reference_features(tmp_path):
    root = tmp_path / "out"
    seeds = [config.compose_run([*FAST, f"paths.output_root={root}", f"seed={s}", "eval.copy_features=pixels"])
             for s in (0, 1)]
    data = load(seeds[0].data)
    Evaluator(seeds[0], data, torch.device("cpu"))
    first = Cache(root / "cache").read_log()
    Evaluator(seeds[1], data, torch.device("cpu"))
    second = Cache(root / "cache").read_log()[len(first):]
    assert first and {e["event"] for e in first} == {"computed"}
    assert second and {e["event"] for e in second} == {"hit"}  # the second run computed nothing
    assert sorted(e["key"] for e in first) == sorted(e["key"] for e in second)


def test_digitnet_is_trained_once_per_cache_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setitem(features.DIGITNET_RECIPE, "steps", 5)  # the plumbing, not the accuracy: a short recipe
    cfg, data = digits()
    a = features.build("digitnet", data_cfg=cfg, cache=Cache(tmp_path / "one"))
    b = features.build("digitnet", data_cfg=cfg, cache=Cache(tmp_path / "one"))
    c = features.build("digitnet", data_cfg=cfg, cache=Cache(tmp_path / "two"))  # trained again, elsewhere
    assert computed(Cache(tmp_path / "one")) == ["digitnet (test_size=100)"]
    fa = a(data.train_x)
    assert fa.shape == (32, 64) and torch.equal(fa, b(data.train_x)) and torch.equal(fa, c(data.train_x))
    assert a.identity() == c.identity()
    with pytest.raises(features.FeatureUnavailable, match="data=digits"):
        features.build("digitnet", data_cfg=OmegaConf.create({"name": "synthetic"}))


def test_reference_stats_keep_the_low_rank_factor_and_entries_cached_without_one_still_load(tmp_path):
    cfg, data = digits(n=32)  # 32 training images of 64 pixels: fewer than dimensions
    space = features.build("pixels")
    new = References(data, cfg, Cache(tmp_path / "cache"), "cpu").stats(space, "train")
    assert new.factor is not None and new.factor.shape == (32, 64)
    path = next((tmp_path / "cache" / "features").glob("*.pt"))
    entry = torch.load(path, weights_only=True)
    torch.save({k: v for k, v in entry.items() if k != "factor"}, path)  # as cached before the factor was kept
    old = References(data, cfg, Cache(tmp_path / "cache"), "cpu").stats(space, "train")
    assert old.factor is None and torch.equal(old[0], new[0]) and torch.equal(old[1], new[1])
    test = References(data, cfg, Cache(tmp_path / "cache"), "cpu").stats(space, "test")
    assert frechet_distance(old, test) == pytest.approx(frechet_distance(new, test), rel=1e-7)
