"""Issue 16's probes: hybrid sampling (Bertrand et al. 2025), the ELS machine (Kamb & Ganguli 2025) and where
sampling trajectories go, checked against exact answers."""
import pytest
import torch

from memsweep.data.datasets import load
from memsweep import config
from memsweep.metrics.memorization import mem_ratio
from memsweep.metrics.probe_settings import ProbeSettings
from memsweep.metrics.probes import ProbeInputs, run_probes
from memsweep.science.els import els_field, els_prediction, patch_size, patches
from memsweep.science.hybrid import switch_at
from memsweep.science.rectified_flow import RectifiedFlow
from memsweep.science.trajectory import domain_distance, noised

RF = RectifiedFlow()


def _digits(n):
    cfg = config.compose_run(["logger=none", f"data.n={n}"])
    return load(cfg.data)


def test_sample_is_sample_field_with_the_guided_network():
    net = lambda x, t, y: -x * (1 + t.view(-1, 1, 1, 1))   # noqa: E731
    x0, y = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(0)), torch.zeros(6, dtype=torch.long)
    seen = []
    a = RF.sample(net, x0, y, 5, "heun")
    b = RF.sample_field(lambda x, t, lab: net(x, t, lab), x0, y, 5, "heun", record=lambda x, t: seen.append(t[0]))
    assert torch.equal(a, b)
    assert [float(t) for t in seen] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8])


def test_scales_read_off_the_noise():
    a, s = RF.scales(torch.tensor([0.0, 0.25, 1.0]))
    assert a.tolist() == [0.0, 0.25, 1.0] and s.tolist() == [1.0, 0.75, 0.0]


def test_switch_at_zero_is_the_network_and_at_one_the_memorizer():
    g = torch.Generator().manual_seed(1)
    train, x0 = torch.rand(5, 1, 4, 4, generator=g) * 2 - 1, torch.randn(8, 1, 4, 4, generator=g)
    y = torch.zeros(8, dtype=torch.long)
    net = lambda x, t, lab: -x   # noqa: E731
    mem = lambda x, t, lab: RF.closed_form(x, t, train)   # noqa: E731
    own = RF.sample_field(net, x0, y, 10, "euler")
    assert torch.equal(RF.sample_field(switch_at(0.0, mem, net), x0, y, 10, "euler"), own)
    assert torch.equal(RF.sample_field(switch_at(1.0, mem, net), x0, y, 10, "euler"),
                       RF.sample_field(mem, x0, y, 10, "euler"))
    half = RF.sample_field(switch_at(0.5, mem, net), x0, y, 10, "euler")
    assert not torch.allclose(half, own)
    mixed = switch_at(0.5, mem, net)(x0, torch.tensor([0.2, 0.7] * 4), y)   # rows on both sides of tau
    assert torch.allclose(mixed[1::2], -x0[1::2])
    assert torch.allclose(mixed[0::2], RF.closed_form(x0[0::2], torch.full((4,), 0.2), train))


def test_els_with_an_image_sized_patch_and_no_translations_is_the_closed_form():
    g = torch.Generator().manual_seed(2)
    train, x = torch.rand(7, 2, 5, 5, generator=g) * 2 - 1, torch.randn(4, 2, 5, 5, generator=g)
    t = torch.tensor([0.1, 0.4, 0.6, 0.9])
    got = els_prediction(RF, x, t, train, k=9, equivariant=False)   # 2 * 5 - 1: the whole image at every pixel
    torch.testing.assert_close(got, RF.closed_form(x, t, train), rtol=1e-4, atol=1e-5)


def test_els_with_one_pixel_patches_is_a_softmax_over_all_training_pixel_values():
    g = torch.Generator().manual_seed(3)
    train, x = torch.rand(3, 1, 4, 4, generator=g) * 2 - 1, torch.randn(2, 1, 4, 4, generator=g)
    t = torch.tensor([0.3, 0.7])
    values = train.flatten()                                     # the set of all training pixel values
    tt = t.view(-1, 1, 1, 1, 1)
    w = torch.softmax(-(x[..., None] - tt * values) ** 2 / (2 * (1 - tt) ** 2), dim=-1)
    want = ((w * values).sum(-1) - x) / (1 - t.view(-1, 1, 1, 1))
    torch.testing.assert_close(els_prediction(RF, x, t, train, k=1), want, rtol=1e-4, atol=1e-5)


def test_patches_and_schedule():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    p = patches(x, 3)
    assert p.shape == (1, 16, 9) and p[0, 5, 4] == 5 and p[0, 0, 0] == 0   # centre pixel; zero padding
    assert patches(x, 3, "circular")[0, 0, 0] == 15
    assert [patch_size((7, 5, 3), t) for t in (0.0, 0.34, 0.99, 1.0)] == [7, 5, 3, 3]
    with pytest.raises(ValueError):
        patches(x, 2)


@pytest.mark.parametrize("n", [16, 64])
def test_els_samples_are_not_training_images(n, one_thread):
    data = _digits(n)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn((128, *data.train_x.shape[1:]), generator=g)
    labels = data.train_y[torch.arange(128) % n]
    machine = els_field(RF, data.train_x, data.train_y)
    els = RF.sample_field(machine, x0, labels, 20, "euler").clamp(-1, 1)
    memo = RF.sample_field(lambda x, t, y: RF.conditional_closed_form(x, t, y, data.train_x, data.train_y),
                           x0, labels, 20, "euler").clamp(-1, 1)
    assert mem_ratio(memo, data.train_x) > 0.9
    assert mem_ratio(els, data.train_x) < 0.3


def test_domain_distance_is_about_one_on_noised_training_images():
    g = torch.Generator().manual_seed(4)
    train = torch.rand(20, 1, 8, 8, generator=g) * 2 - 1
    t = torch.full((20,), 0.6)
    d = domain_distance(RF, noised(RF, train, t, g), t, train)
    assert 0.8 < d.mean() < 1.1
    far = domain_distance(RF, torch.full((3, 1, 8, 8), 5.0), t[:3], train)
    assert far.min() > 3


def test_run_probes_keys_and_limits(one_thread):
    data = _digits(16)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn((32, *data.train_x.shape[1:]), generator=g)
    memo_net = lambda x, t, y: RF.conditional_closed_form(x, t, y, data.train_x, data.train_y)   # noqa: E731
    inp = ProbeInputs(RF, memo_net, x0, data.train_y[torch.arange(32) % 16], 10, "euler", data.train_x,
                      data.train_y, data.test_x)
    row, samples = run_probes(inp, settings=ProbeSettings(hybrid_tau=(0.0, 0.5, 1.0)))
    assert row["hybrid_tau"] == [0.0, 0.5, 1.0] and row["hybrid_dist"][0] == 0
    assert row["hybrid_dist"] == pytest.approx([0, 0, 0], abs=1e-4)   # a memorizing network: every tau the same
    assert row["els_mem_dist"] == pytest.approx(0, abs=1e-4) and row["els_dist"] > 1
    assert len(row["traj_t"]) == 10 and row["traj_t"][0] == 0
    assert row["traj_state"][0] == pytest.approx(row["traj_train"][0], rel=0.1)   # at t = 0 all are noise
    assert set(samples) == {"network", "memorizer", "els"}
