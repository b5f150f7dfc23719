"""`memsweep eval`: a metric computed afterwards from the saved samples and evaluation weights, merged into the
run's rows without retraining and without duplicating rows."""
from pathlib import Path

import pytest
import torch
from cleanfid.fid import get_folder_features
from cleanfid.inception_torchscript import InceptionV3W
from PIL import Image

from memsweep import config
from memsweep.science import unet
from memsweep.cli import main
from memsweep.data.datasets import load
from memsweep.eval.evaluator import Evaluator, keys_of
from memsweep.eval.features import INCEPTION_FILE, build
from memsweep.metrics.copy_detection import copy_fraction
from memsweep.metrics.kid import kid
from memsweep.metrics.memorization import mem_ratio
from memsweep.metrics.mifid import mifid
from memsweep.store import identity

from conftest import FAST, evaluated_run


pytestmark = pytest.mark.xdist_group("test_posthoc")   # its module fixture evaluates once, on one worker


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run directory as training leaves it (two evaluations of an untrained model: no training needed)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as runtime.threads=1 does for training
    cfg = config.compose_run([*FAST, f"paths.output_root={tmp_path_factory.mktemp('out')}"])
    yield evaluated_run(cfg, (10, 20))
    torch.set_num_threads(threads)


def test_eval_adds_a_metric_to_every_row_without_duplicating_rows(run, capsys):
    store, data, _, _ = run
    before = store.read_metrics()
    assert main(["eval", str(store.dir), "copy", "--features", "pixels"]) == 0
    after = store.read_metrics()
    assert [r["step"] for r in after] == [r["step"] for r in before]  # the same rows, no new ones
    for old, new in zip(before, after):
        assert {k: new[k] for k in old} == old  # what was there is untouched
        assert set(new) - set(old) == {"copy_pixels", "copy_pixels_sim", "copy_pixels_lo", "copy_pixels_hi"}
        samples, _ = store.load_samples(new["step"])
        assert new["copy_pixels"] == pytest.approx(copy_fraction(samples, data.train_x, 0.5))
        assert new["copy_pixels_lo"] <= new["copy_pixels"] <= new["copy_pixels_hi"]
    text = store.metrics_path.read_text()
    assert main(["eval", str(store.dir), "copy", "--features", "pixels"]) == 0  # again: nothing to add
    assert store.metrics_path.read_text() == text
    assert "nothing missing" in capsys.readouterr().out


def test_eval_generates_more_samples_from_the_evaluation_weights(run):
    store, data, ev, model = run
    assert main(["eval", store.run_id, "mem", "--num-samples", "40", "--steps", "last",
                 "--output-root", str(store.dir.parents[1])]) == 0
    row = store.read_metrics()[-1]
    saved, _ = store.load_samples(20)
    more = ev.generate(model, 8, start=32)  # the 8 beyond the 32 saved, with their own fixed noise
    more = ((more.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1  # 8-bit, like the saved ones
    assert row["mem_ratio_s40"] == pytest.approx(mem_ratio(torch.cat([saved, more]), data.train_x))
    assert "mem_ratio_s40" not in store.read_metrics()[0]  # --steps last


def test_eval_refuses_a_run_being_trained(run, capsys):
    store = run[0]
    text = store.metrics_path.read_text()
    with store.lock():  # as a training process holds it
        assert main(["eval", str(store.dir), "copy", "--features", "pixels"]) == 3
    assert store.metrics_path.read_text() == text
    assert "being trained" in capsys.readouterr().out


def test_the_evaluator_writes_the_keys_memsweep_eval_looks_for(run):
    store, _, ev, _ = run
    row = store.read_metrics()[0]
    for kind, spec in (("mem", "pixels"), ("sw", "pixels"), ("fd", "pixels")):
        assert set(keys_of(ev.cfg, kind, spec)) <= set(row), kind
    assert row["sw_test"] == row["sw_pixels_test"] and row["fid_train_test"] == row["fd_pixels_train_test"]
    assert row["mem_ratio_lo"] <= row["mem_ratio"] <= row["mem_ratio_hi"]


def test_missing_inception_weights_give_one_warning_and_no_fid(tmp_path, caplog):
    """eval.inception_path unset and clean-fid's cache without the weights: a default location that is absent is
    a warning (a path the user gives must hold them: tests/test_input_files.py)."""

    if Path("/tmp", INCEPTION_FILE).exists():
        pytest.skip("Inception weights in clean-fid's cache")
    cfg = config.compose_run([*FAST, f"paths.output_root={tmp_path}", "eval.fid_features=inception"])
    data = load(cfg.data)
    model = unet.build(cfg.model, cfg.data.image_size, cfg.data.channels, data.num_classes).eval()
    with caplog.at_level("WARNING", logger="memsweep"):
        ev = Evaluator(cfg, data, torch.device("cpu"))
        rows = [ev(model, step)[0] for step in (1, 2)]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "eval.inception_path" in warnings[0] and INCEPTION_FILE in warnings[0]
    assert not any(k.startswith(("fid", "fd_")) for row in rows for k in row)
    assert "mem_ratio" in rows[0] and "sw_test" in rows[0]


def test_inception_space_matches_clean_fid_pipeline(tmp_path, one_thread):
    """The Inception space with a stand-in network file (the real weights cannot be downloaded here): our
    preprocessing (8-bit, clean-fid's PIL bicubic resize to 299, grayscale to RGB) against clean-fid's own
    folder pipeline feeding the same network. (The Frechet distance of its features is the code path tested
    in pixels; a 2048-d one costs a minute of scipy sqrtm on this CPU.)"""

    class StandIn(torch.nn.Module):  # what clean-fid calls: .layers on 299x299 inputs -> 2048 features
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.layers = torch.nn.Sequential(torch.nn.AvgPool2d(13), torch.nn.Flatten(),
                                              torch.nn.Linear(3 * 23 * 23, 2048))

        def forward(self, x):
            return self.layers(x)
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.jit.script(StandIn()).save(str(weights / INCEPTION_FILE))
    images = load(config.compose_run(FAST).data).test_x[:12]
    ours = build("inception", "cpu", str(weights))(images)
    folder = tmp_path / "png"
    folder.mkdir()
    for i, x in enumerate(((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)):
        Image.fromarray(x[0].numpy()).save(folder / f"{i:03d}.png")
    theirs = get_folder_features(str(folder), model=InceptionV3W(str(weights), download=False), num_workers=0,
                                 batch_size=5, device=torch.device("cpu"), mode="clean", verbose=False)
    assert ours.shape == (12, 2048)
    assert torch.allclose(ours, torch.from_numpy(theirs).float(), rtol=1e-4, atol=1e-4)


def test_kid_and_mifid_are_off_by_default_and_leave_run_ids_alone():
    base = config.compose_run(FAST)
    on = config.compose_run([*FAST, "eval.kid_features=pixels", "eval.mifid_features=pixels", "eval.mifid_epsilon=0.2"])
    assert identity.run_id(on) == identity.run_id(base)
    assert str(base.eval.kid_features) == "none" and str(base.eval.mifid_features) == "none"


def test_kid_and_mifid_in_an_evaluation_and_after_the_fact(run, capsys):
    store, data, ev, model = run
    assert not any(k.startswith(("kid_", "mifid_")) for k in store.read_metrics()[0])  # off by default
    cfg = config.compose_run([*FAST, f"paths.output_root={store.dir.parents[1]}", "eval.kid_features=pixels",
                              "eval.mifid_features=pixels"])
    row, samples, _ = Evaluator(cfg, data, torch.device("cpu"))(model, 10)
    for split, ref in (("train", data.train_x), ("test", data.test_x)):
        want = kid(ref.flatten(1), samples.flatten(1), 100, 1000, seed=cfg.eval.noise_seed)
        assert (row[f"kid_pixels_{split}"], row[f"kid_pixels_{split}_std"]) == pytest.approx(want)
        assert row[f"mifid_pixels_{split}"] == pytest.approx(mifid(ref.flatten(1), samples.flatten(1), 0.1))
    # memsweep eval adds them to a run trained without them, from the saved samples
    assert main(["eval", str(store.dir), "kid", "mifid", "--features", "pixels"]) == 0
    after = store.read_metrics()
    keys = {"kid_pixels_train", "kid_pixels_train_std", "kid_pixels_test", "kid_pixels_test_std",
            "mifid_pixels_train", "mifid_pixels_test"}
    assert all(keys <= set(r) for r in after)
    saved, _ = store.load_samples(after[0]["step"])
    assert after[0]["kid_pixels_test"] == pytest.approx(kid(data.test_x.flatten(1), saved.flatten(1), seed=0)[0])
    assert main(["eval", str(store.dir), "mifid", "--features", "pixels", "--threshold", "0.05"]) == 0
    assert "mifid_pixels_train_t0.05" in store.read_metrics()[-1]
