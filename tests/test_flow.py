import torch

from memsweep.science import flow
from memsweep.metrics.memorization import nearest_neighbours
from memsweep.science.unet import UNet, count_parameters


def test_interpolation_endpoints():
    x0, x1 = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    assert torch.equal(flow.interpolate(x0, x1, torch.zeros(4)), x0)
    assert torch.equal(flow.interpolate(x0, x1, torch.ones(4)), x1)


def test_closed_form_velocity_for_a_single_point_is_straight_to_it():
    x1 = torch.randn(1, 1, 4, 4)
    x, t = torch.randn(3, 1, 4, 4), torch.tensor([0.0, 0.3, 0.9])
    u = flow.closed_form_velocity(x, t, x1)
    assert torch.allclose(u, (x1 - x) / (1 - t).view(-1, 1, 1, 1), atol=1e-5)


def test_sampling_the_closed_form_field_returns_training_points():
    g = torch.Generator().manual_seed(0)
    train = torch.rand(10, 1, 4, 4, generator=g) * 2 - 1
    x0 = torch.randn(64, 1, 4, 4, generator=g)
    out = flow.sample(lambda x, t: flow.closed_form_velocity(x, t, train), x0, steps=200)
    d, _ = nearest_neighbours(out, train, k=1)
    assert d.max() < 0.05  # every sample lands on a training image


def test_loss_is_zero_for_the_exact_velocity():
    x0, x1, t = torch.randn(5, 1, 8, 8), torch.randn(5, 1, 8, 8), torch.rand(5)
    oracle = lambda xt, tt, y: x1 - x0  # noqa: E731
    assert flow.loss_per_sample(oracle, x1, torch.zeros(5, dtype=torch.long), x0, t).abs().max() == 0


def test_unet_shapes_and_cfg_path():
    m = UNet(8, 1, 10, channels=12, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
             head_dim=12, emb_dim=48)
    x, t = torch.randn(3, 1, 8, 8), torch.rand(3)
    labels = torch.tensor([0, 5, 10])  # 10 = no label
    assert m(x, t, labels).shape == x.shape
    u = flow.velocity(m, x, t, labels, null_label=10, cfg_weight=1.5)
    assert u.shape == x.shape and torch.isfinite(u).all()
    assert 50_000 < count_parameters(UNet(8, 1, 10, channels=12, channel_mult=(1, 2), num_res_blocks=1,
                                          attn_resolutions=(), head_dim=24, emb_dim=48)) < 150_000
