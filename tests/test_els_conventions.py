"""The ELS machine on its reference's conventions (Kamb & Ganguli 2025, utils/idealscore.py and
scales_calibration.py): the interior patch bank against their formula written out pixel by pixel, the patch size
calibrated against a network, and each variant's own keys in a run's rows."""
import pytest
import torch

from memsweep import config
from memsweep.cli import main
from memsweep.metrics.probe_settings import ProbeSettings, probe_keys
from memsweep.metrics.probes import ProbeInputs, run_probes
from memsweep.science.els import bank_patches, calibrate, els_field, els_prediction, patch_size
from memsweep.science.rectified_flow import RectifiedFlow
from memsweep.science.vp import VP
from memsweep.store import identity
from memsweep.store.run import RunStore
from memsweep.train.loop import train

from conftest import FAST

RF = RectifiedFlow()


def their_denoised(x, a, b, images, k, pixel):
    """E[y | x] at one pixel as Kamb & Ganguli's LocalEquivScoreModule has it, written out: the query patch of x
    padded circularly around the pixel, every interior k x k patch P of the training images (no padding),
    weights exp(-(|x_q|^2 - 2 a <x_q, P> + a^2 |P|^2) / (2 b^2)), their score -sum w (x - a P_centre) / (b^2 sum w),
    and the posterior mean it stands for, (x + b^2 score) / a. x (C, H, W), images (n, C, H, W)."""
    c, h, w = x.shape
    r, (i, j) = k // 2, pixel
    rows, cols = [(i + d) % h for d in range(-r, r + 1)], [(j + d) % w for d in range(-r, r + 1)]
    xq = x[:, rows][:, :, cols]
    args, centres = [], []
    for y in images:
        for top in range(h - k + 1):
            for left in range(w - k + 1):
                p = y[:, top:top + k, left:left + k]
                args.append(-(xq.pow(2).sum() - 2 * a * (xq * p).sum() + a ** 2 * p.pow(2).sum()) / (2 * b ** 2))
                centres.append(p[:, r, r])
    weights = torch.softmax(torch.stack(args), 0)
    score = -(weights[:, None] * (x[:, i, j][None] - a * torch.stack(centres))).sum(0) / b ** 2
    return (x[:, i, j] + b ** 2 * score) / a


@pytest.mark.parametrize("formulation, t", [(RF, 0.3), (RF, 0.85), (VP(), 0.6)])
def test_interior_bank_is_their_formula(formulation, t):
    g = torch.Generator().manual_seed(5)
    images, x = torch.rand(4, 2, 7, 7, generator=g) * 2 - 1, torch.randn(1, 2, 7, 7, generator=g)
    tt = torch.tensor([t])
    a, b = (float(v) for v in formulation.scales(tt))
    pred = els_prediction(formulation, x, tt, images, k=3, padding="circular", bank="interior")
    got = formulation.denoised(x, tt, pred)[0]
    for pixel in [(0, 0), (0, 3), (3, 3), (6, 5), (6, 6)]:   # corners, an edge, the middle
        want = their_denoised(x[0], a, b, images, 3, pixel)
        torch.testing.assert_close(got[:, pixel[0], pixel[1]], want, rtol=1e-4, atol=1e-5)


def test_the_banks_hold_the_patches_they_say_and_differ_at_low_noise():
    g = torch.Generator().manual_seed(6)
    images, x = torch.rand(5, 1, 8, 8, generator=g) * 2 - 1, torch.randn(3, 1, 8, 8, generator=g)
    assert bank_patches(images, 5, "interior").shape == (5, 16, 25)    # (8 - 5 + 1)^2 per image
    assert bank_patches(images, 5, "padded").shape == (5, 64, 25)
    with pytest.raises(ValueError):
        bank_patches(images, 9, "interior")
    t = torch.full((3,), 0.9)
    padded = RF.denoised(x, t, els_prediction(RF, x, t, images, 5, padding="circular"))
    interior = RF.denoised(x, t, els_prediction(RF, x, t, images, 5, padding="circular", bank="interior"))
    assert (padded - interior).abs().max() > 0.1


def test_a_calibrated_schedule_is_looked_up_at_the_nearest_time():
    schedule = {0.0: 3, 0.5: 7, 0.95: 11}
    assert [patch_size(schedule, t) for t in (0.0, 0.2, 0.3, 0.5, 0.8, 1.0)] == [3, 3, 7, 7, 11, 11]
    assert patch_size((7, 5, 3), 1 / 3 - 1e-9) == 5   # a time on a bin's edge, in float32, is in the next bin


def test_calibration_finds_the_size_of_an_els_network():
    """A 'network' that is the ELS machine with 5 x 5 patches: calibrated, every step but the first (rectified
    flow at t = 0: the score is -x whatever the machine, so every size ties and the smallest wins) picks 5."""
    g = torch.Generator().manual_seed(7)
    train_x, train_y = torch.rand(12, 1, 8, 8, generator=g) * 2 - 1, torch.arange(12) % 2
    x0, labels = torch.randn(6, 1, 8, 8, generator=g), torch.arange(6) % 2
    for bank, padding in (("interior", "circular"), ("padded", "zeros")):
        network = els_field(RF, train_x, train_y, 5, padding=padding, bank=bank)
        cal = calibrate(RF, network, x0, labels, 8, "euler", train_x, train_y, padding=padding, bank=bank)
        assert cal["t"] == pytest.approx([i / 8 for i in range(8)], abs=1e-6)
        assert cal["patch"][0] == 3 and cal["patch"][1:] == [5] * 7, (bank, cal["patch"])
        assert min(cal["cos"]) > 0.999
        assert cal["sizes"] == ([3, 5, 7] if bank == "interior" else [3, 5, 7, 9, 11, 13, 15])


def test_each_variant_has_its_own_keys(one_thread):
    g = torch.Generator().manual_seed(8)
    train_x, train_y = torch.rand(10, 1, 8, 8, generator=g) * 2 - 1, torch.arange(10) % 2
    x0 = torch.randn(8, 1, 8, 8, generator=g)
    memo = lambda x, t, y: RF.conditional_closed_form(x, t, y, train_x, train_y)   # noqa: E731
    inp = ProbeInputs(RF, memo, x0, torch.arange(8) % 2, 6, "euler", train_x, train_y, train_x)
    settings = ProbeSettings(els_bank="interior", els_patch="calibrated", els_padding="circular",
                             els_calibration_samples=4)
    row, _ = run_probes(inp, ("els",), settings)
    assert probe_keys("els", settings) == ("els_dist_interior_calibrated", "els_mem_dist",
                                           "els_mem_ratio_interior_calibrated", "els_patch_interior_calibrated")
    assert set(probe_keys("els", settings)) <= set(row) and "els_dist" not in row
    assert len(row["els_patch_interior_calibrated"]) == len(row["els_patch_t_interior_calibrated"]) == 6
    assert set(row["els_patch_interior_calibrated"]) <= {3, 5, 7}
    assert probe_keys("els", ProbeSettings()) == ("els_dist", "els_mem_dist", "els_mem_ratio", "els_patch")


def test_both_banks_on_one_run_and_bad_settings(out, capsys):
    cfg = config.compose_run([*FAST, "+probes.els_patch=[5,3]"])
    train(cfg)
    run = identity.run_id(cfg)
    assert main(["eval", run, "els", "--steps", "last"]) == 0
    assert main(["eval", run, "els", "--steps", "last", "--els-bank", "interior", "--els-padding", "circular"]) == 0
    assert main(["eval", run, "els", "--steps", "last", "--els-patch", "calibrated"]) == 0
    row = RunStore(identity.run_dir(cfg)).read_metrics()[-1]
    assert row["els_patch"] == [5, 3] and row["els_patch_interior"] == [5, 3]
    assert row["els_dist"] != row["els_dist_interior"] and len(row["els_patch_t_calibrated"]) == 20
    capsys.readouterr()
    assert main(["eval", run, "els", "--els-patch", "4"]) == 2
    assert "--els-patch 4" in capsys.readouterr().err
    assert main(["train", "+probes.els_bank=interior", "+probes.els_patch=9"]) == 2
    assert "must fit in the 8x8 image" in capsys.readouterr().err
    assert main(["train", "+probes.els_bank=interior", "+probes.els_equivariant=false"]) == 2
    assert "probes.els_bank=interior" in capsys.readouterr().err
    assert main(["train", "+probes.els_bank=interior", "+probes.els_patch=calibrated",
                 "+probes.els_calibration_sizes=[9,11]"]) == 2
    assert "none fits the 8x8 image" in capsys.readouterr().err
    assert main(["train", "+probes.els_patch=4"]) == 2
    assert "probes.els_patch=4: must be an odd patch size" in capsys.readouterr().err
