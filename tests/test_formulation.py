"""The formulation interface (science.formulation) and rectified flow behind it."""
import pytest
import torch
from omegaconf import OmegaConf

from memsweep.errors import ConfigError
from memsweep.metrics.memorization import nearest_neighbours
from memsweep.science import objective
from memsweep.science.rectified_flow import RectifiedFlow
from memsweep.science.unet import UNet, count_parameters

RF = RectifiedFlow()


def _labels(n):
    return torch.zeros(n, dtype=torch.long)


def test_noise_is_the_noise_at_t0_and_the_data_at_t1():
    x0, x1 = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    assert torch.equal(RF.noise(x1, x0, torch.zeros(4)), x0)
    assert torch.equal(RF.noise(x1, x0, torch.ones(4)), x1)


def test_noise_and_loss_take_packed_shapes():
    x0, x1, t = torch.randn(3, 2, 1, 4, 4), torch.randn(3, 2, 1, 4, 4), torch.rand(3, 2)
    assert torch.equal(RF.noise(x1, x0, t)[:, 1], RF.noise(x1[:, 1], x0[:, 1], t[:, 1]))
    loss = RF.loss_per_sample(lambda x, tt, y: torch.zeros_like(x), x1, torch.zeros(3, 2, dtype=torch.long), x0, t)
    assert loss.shape == (3, 2)


def test_draw_takes_the_noise_then_t_from_the_generator():
    x1 = torch.zeros(5, 1, 4, 4)
    x0, t = RF.draw(x1, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    assert torch.equal(x0, torch.randn(x1.shape, generator=g)) and torch.equal(t, torch.rand(5, generator=g))


def test_closed_form_for_a_single_point_is_straight_to_it():
    x1 = torch.randn(1, 1, 4, 4)
    x, t = torch.randn(3, 1, 4, 4), torch.tensor([0.0, 0.3, 0.9])
    u = RF.closed_form(x, t, x1)
    assert torch.allclose(u, (x1 - x) / (1 - t).view(-1, 1, 1, 1), atol=1e-5)


def test_loss_of_the_closed_form_on_a_single_training_image_is_zero_at_any_t():
    x1 = torch.randn(1, 1, 4, 4).expand(6, -1, -1, -1)
    x0, t = torch.randn(6, 1, 4, 4), torch.tensor([0.0, 0.1, 0.4, 0.6, 0.9, 0.99])
    memorizer = lambda x, tt, y: RF.closed_form(x, tt, x1[:1])  # noqa: E731
    assert RF.loss_per_sample(memorizer, x1, _labels(6), x0, t).max() < 1e-6


def test_loss_is_zero_for_the_exact_velocity():
    x0, x1, t = torch.randn(5, 1, 8, 8), torch.randn(5, 1, 8, 8), torch.rand(5)
    oracle = lambda xt, tt, y: x1 - x0  # noqa: E731
    assert RF.loss_per_sample(oracle, x1, _labels(5), x0, t).abs().max() == 0


@pytest.mark.parametrize("method", RectifiedFlow.samplers)
def test_sampling_the_closed_form_returns_training_images(method):
    g = torch.Generator().manual_seed(0)
    train = torch.rand(10, 1, 4, 4, generator=g) * 2 - 1
    x0 = torch.randn(64, 1, 4, 4, generator=g)
    out = RF.sample(lambda x, t, y: RF.closed_form(x, t, train), x0, _labels(64), steps=200, method=method)
    d, _ = nearest_neighbours(out, train, k=1)
    assert d.max() < 0.05  # every sample lands on a training image


def test_an_unknown_sampler_is_refused():
    with pytest.raises(ValueError, match="euler or heun"):
        RF.sample(lambda x, t, y: x, torch.zeros(2, 1, 4, 4), _labels(2), steps=2, method="rk4")


def test_log_snr_is_increasing_and_zero_halfway():
    t = torch.linspace(0.01, 0.99, 50)
    s = RF.log_snr(t)
    assert (s.diff() > 0).all() and abs(RF.log_snr(torch.tensor(0.5))) < 1e-6
    assert torch.allclose(s.exp(), t ** 2 / (1 - t) ** 2, rtol=1e-4)


def test_the_factory_defaults_to_rectified_flow():
    cfg = OmegaConf.create({"train": {"steps": 10}})
    OmegaConf.set_struct(cfg, True)  # as Hydra composes it; a run stored before the objective group has none
    assert isinstance(objective.of_config(cfg), RectifiedFlow)
    assert objective.build("rectified_flow").samplers == ("euler", "heun")
    with pytest.raises(ConfigError, match="objective=ddpm"):
        objective.build("ddpm")


def test_unet_shapes_and_guidance():
    m = UNet(8, 1, 10, channels=12, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
             head_dim=12, emb_dim=48)
    x, t = torch.randn(3, 1, 8, 8), torch.rand(3)
    labels = torch.tensor([0, 5, 10])  # 10 = no label
    assert m(x, t, labels).shape == x.shape
    u = RF.guided(m, x, t, labels, null_label=10, cfg_weight=1.5)
    assert u.shape == x.shape and torch.isfinite(u).all()
    assert torch.equal(RF.guided(m, x, t, labels, null_label=None), m(x, t, labels))
    assert 50_000 < count_parameters(UNet(8, 1, 10, channels=12, channel_mult=(1, 2), num_res_blocks=1,
                                          attn_resolutions=(), head_dim=24, emb_dim=48)) < 150_000
