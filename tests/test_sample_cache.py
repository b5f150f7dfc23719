"""Sample analyses at scale: blocked passes equal to unblocked ones, computed once and stored in the run
directory, read back equal, recomputed when their definition or inputs change, and capped when asked."""
import multiprocessing
import os

import numpy as np
import pandas as pd
import pytest
import torch

from test_report import NUM_SAMPLES, fake_sweep  # noqa: F401  (the fixture)

from memsweep.cli import main
from memsweep.metrics.memorization import nearest_neighbours
from memsweep.metrics.novelty import evaluation_stats, reference_radii
from memsweep.metrics.scan import scan, self_knn
from memsweep.report import copies, sample_analyses
from memsweep.report.build import make_report
from memsweep.store import analysis_cache

RUN = "run016abcdef"


def _sets(seed=0):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(300, 3, 4, 4, generator=g)
    gen = torch.randn(170, 3, 4, 4, generator=g) * 1.1
    gen[:40] = real[:40] + 1e-3 * torch.randn(40, 3, 4, 4, generator=g)      # near-copies
    return gen, real


def test_blocked_and_unblocked_passes_are_equal():
    gen, real = _sets()
    rr, gr = torch.rand(len(real)) * 6, torch.rand(len(gen)) * 6
    whole = scan(gen, real, 2, rr, gr, block=10_000, ref_block=10_000)
    for block, ref_block in ((7, 13), (64, 300), (170, 1)):
        part = scan(gen, real, 2, rr, gr, block=block, ref_block=ref_block)
        assert torch.equal(part.index, whole.index) and torch.allclose(part.dist, whole.dist, atol=1e-5)
        assert torch.equal(part.query_inside, whole.query_inside) and torch.equal(part.ref_inside, whole.ref_inside)
    d, i = nearest_neighbours(gen, real, k=2)
    assert torch.equal(i, whole.index) and torch.allclose(d, whole.dist, atol=1e-5)
    d2 = torch.cdist(gen.flatten(1).double(), real.flatten(1).double())  # memberships by brute force
    assert torch.equal(whole.query_inside, (d2 <= rr.double()[None]).any(1))
    assert torch.equal(whole.ref_inside, (d2 <= gr.double()[:, None]).any(0))
    for block in (1, 17, 64, 10_000):   # the symmetric self-search, against a plain one
        d, i = self_knn(real, 3, block=block)
        bd, bi = nearest_neighbours(real, real, k=4)
        assert torch.equal(i, bi) and torch.allclose(d, bd, atol=1e-5)


def test_one_pass_equals_the_separate_searches():
    gen, real = _sets(1)
    test = torch.randn(90, 3, 4, 4)
    refs = reference_radii(real, test)
    row, found = evaluation_stats(gen, real, test, refs)
    target, dist = copies.copy_assignments(gen, real)
    assert (found["target"] == target).all() and np.allclose(found["dist"], dist, atol=1e-6)
    own, _ = nearest_neighbours(real, real, k=2)
    assert torch.allclose(refs["train_nn"], own[:, 1], atol=1e-6)        # the isolation of per_image
    assert row["mem_ratio"] == pytest.approx((target >= 0).mean()) and row["mem_ratio"] >= 40 / 170


def _frames(res):
    return {"novelty": res.novelty, "images": res.images, "classes": res.classes}


def _mtimes(run_dir):
    return {p.name: p.stat().st_mtime_ns for p in (run_dir / "analysis").iterdir()}


def test_computed_once_then_read_back_equal(fake_sweep):  # noqa: F811
    run_dir = fake_sweep / "runs" / RUN
    steps = sample_analyses.saved_steps(run_dir)
    before = sample_analyses.COMPUTED.copy()
    shared = {}   # what a report's runs share
    first = sample_analyses.analyze_samples(run_dir, shared)
    assert sample_analyses.COMPUTED["evaluation"] - before["evaluation"] == len(steps)
    assert sample_analyses.COMPUTED["reference"] - before["reference"] == 2            # the training set's, the test split's
    other = sample_analyses.analyze_samples(fake_sweep / "runs" / "run032abcdef", shared)
    assert sample_analyses.COMPUTED["reference"] - before["reference"] == 3            # another n: the same test split
    refs = [analysis_cache.read(d, "reference", sample_analyses.VERSION, sample_analyses._RunInputs(
        sample_analyses.RunStore(d), sample_analyses.RunStore(d).read_config(), {}, "cpu").inputs())[0] for d in
        (run_dir, fake_sweep / "runs" / "run032abcdef")]
    assert np.array_equal(refs[0]["test"], refs[1]["test"]) and len(refs[0]["train"]) != len(refs[1]["train"])
    assert len(other.novelty) and sample_analyses.COMPUTED["data"] - before["data"] == 2
    files = _mtimes(run_dir)
    assert len(files) == len(steps) + 1 and not [p for p in files if p.endswith(".tmp")]
    computed = sample_analyses.COMPUTED.copy()
    again = sample_analyses.analyze_samples(run_dir)
    assert sample_analyses.COMPUTED == computed and _mtimes(run_dir) == files      # read only: nothing computed or written
    for name, frame in _frames(first).items():
        pd.testing.assert_frame_equal(_frames(again)[name], frame, check_exact=True)
    i = int(again.images.sort_values("copies").iloc[-1]["index"])
    assert torch.equal(again.train_x[i], first.train_x.inputs.data()[0].train_x[i])   # stored image, exact
    assert sample_analyses.COMPUTED["data"] == computed["data"]


def test_a_changed_definition_or_input_recomputes(fake_sweep, monkeypatch):  # noqa: F811
    run_dir = fake_sweep / "runs" / RUN
    steps = sample_analyses.saved_steps(run_dir)
    first = sample_analyses.analyze_samples(run_dir)
    c = sample_analyses.COMPUTED.copy()
    os.utime(run_dir / "samples" / f"step_{steps[2]:09d}.npz")               # an evaluation saved again
    sample_analyses.analyze_samples(run_dir)
    assert sample_analyses.COMPUTED["evaluation"] - c["evaluation"] == 1 and sample_analyses.COMPUTED["reference"] == c["reference"]
    monkeypatch.setattr(sample_analyses, "VERSION", sample_analyses.VERSION + 1)
    c = sample_analyses.COMPUTED.copy()
    second = sample_analyses.analyze_samples(run_dir)
    assert sample_analyses.COMPUTED["evaluation"] - c["evaluation"] == len(steps)
    assert analysis_cache.path(run_dir, "reference", sample_analyses.VERSION).is_file()
    pd.testing.assert_frame_equal(second.novelty, first.novelty)
    analysis_cache.path(run_dir, f"step_{steps[0]:09d}.novelty", sample_analyses.VERSION).write_bytes(b"torn")
    c = sample_analyses.COMPUTED.copy()
    sample_analyses.analyze_samples(run_dir)                                          # unreadable: computed again
    assert sample_analyses.COMPUTED["evaluation"] - c["evaluation"] == 1


def _analyze_in_child(run_dir, queue):
    res = sample_analyses.analyze_samples(run_dir)
    queue.put(res.novelty.drop(columns="nn_ratio_hist").to_dict("list"))


def test_two_reports_at_once(fake_sweep):  # noqa: F811
    run_dir = fake_sweep / "runs" / RUN
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_analyze_in_child, args=(run_dir, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert got[0] == got[1]
    assert not [p for p in (run_dir / "analysis").iterdir() if p.name.endswith(".tmp")]
    res = sample_analyses.analyze_samples(run_dir)
    assert res.novelty.drop(columns="nn_ratio_hist").to_dict("list") == got[0]


def test_second_report_reads_and_equals_the_first(fake_sweep):  # noqa: F811
    out = fake_sweep / "sweeps" / "fake"
    make_report(fake_sweep, "fake")
    first = _outputs(out)
    c = sample_analyses.COMPUTED.copy()
    make_report(fake_sweep, "fake")
    assert sample_analyses.COMPUTED == c                        # no evaluation, reference or data computed or loaded
    assert _outputs(out) == first


def _outputs(out) -> dict:
    """The report's tables, and report.md but for the time it was generated."""
    got = {n: (out / n).read_text() for n in ("novelty.csv", "copies_by_image.csv", "copies_by_class.csv",
                                               "summary.csv")}
    return {**got, "report.md": [x for x in (out / "report.md").read_text().splitlines()
                                 if not x.startswith("_Generated")]}


@pytest.mark.slow
def test_max_samples_is_used_and_stated(fake_sweep, capsys):  # noqa: F811
    assert main(["report", "fake", "--output-root", str(fake_sweep), "--max-samples", "10"]) == 0
    text = (fake_sweep / "sweeps" / "fake" / "report.md").read_text()
    assert "at most the first 10 samples of each evaluation (`--max-samples`)" in text
    run_dir = fake_sweep / "runs" / RUN
    step = sample_analyses.saved_steps(run_dir)[-1]
    arrays, meta = analysis_cache.read(run_dir, f"step_{step:09d}.novelty.max10", sample_analyses.VERSION, {
        **sample_analyses._RunInputs(sample_analyses.RunStore(run_dir), sample_analyses.RunStore(run_dir).read_config(), {}, "cpu").inputs(),
        "samples": analysis_cache.stamp(run_dir / "samples" / f"step_{step:09d}.npz"), "threshold": 1 / 3,
        "bins": sample_analyses.BINS, "max_samples": 10})
    assert meta["samples_used"] == 10 and len(arrays["target"]) == 10 < NUM_SAMPLES
    assert main(["report", "fake", "--output-root", str(fake_sweep)]) == 0     # uncapped again: all samples
    assert "--max-samples" not in (fake_sweep / "sweeps" / "fake" / "report.md").read_text()
    assert main(["report", "fake", "--output-root", str(fake_sweep), "--max-samples", "2"]) == 2
    if not torch.cuda.is_available():
        assert main(["report", "fake", "--output-root", str(fake_sweep), "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
