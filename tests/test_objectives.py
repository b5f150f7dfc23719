"""The objective group: VP/DDPM (Ho et al. 2020; DDIM, Song et al. 2021), EDM (Karras et al. 2022) and rectified
flow's closed-form target (Bertrand et al. 2025); unconditional runs; run ids of existing runs unchanged."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from memsweep import config
from memsweep.cli import main
from memsweep.data.datasets import Dataset
from memsweep.errors import ConfigError
from memsweep.metrics.field import FieldProbe
from memsweep.metrics.loss import FixedLossBatch, fixed_loss
from memsweep.metrics.memorization import nearest_neighbours
from memsweep.metrics.probe_settings import ProbeSettings
from memsweep.metrics.probes import ProbeInputs, run_probes
from memsweep.report.gap_by_noise import run_formulation, snr_edges
from memsweep.science.edm import EDM
from memsweep.science.rectified_flow import RectifiedFlow
from memsweep.science.unet import UNet
from memsweep.science.vp import VP
from memsweep.store import identity
from memsweep.store.run import RunStore
from memsweep.train.loop import train
from memsweep.train.packing import pack_key

from conftest import FAST, run_cli
from test_config import OLD_DEMO, OLD_DEMO_IDS

RF, VPF, EDMF = RectifiedFlow(), VP(), EDM()
SAMPLERS = [(RF, "euler", 200), (RF, "heun", 100), (VPF, "ddim", 50), (VPF, "ddpm", 100), (EDMF, "heun", 18)]
BASE = [o for o in FAST if not o.startswith(("train.steps=", "eval.num_points=", "eval.first_step="))]
TINY = ["model.channels=8", "model.emb_dim=32", "train.steps=20", "eval.num_points=2", "eval.first_step=10",
        "eval.num_samples=16", "eval.loss_points=32", "eval.field_points=8", "eval.bootstrap=0"]


def _train_set(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 1, 4, 4), generator=g) * 2 - 1


@pytest.mark.parametrize("formulation,method,steps", SAMPLERS, ids=lambda v: getattr(v, "name", str(v)))
def test_sampling_each_closed_form_returns_training_images(formulation, method, steps):
    train_x = _train_set()
    x0 = torch.randn((32, 1, 4, 4), generator=torch.Generator().manual_seed(1))
    out = formulation.sample(formulation.memorizer(train_x), x0, torch.zeros(32, dtype=torch.long), steps, method)
    dist, _ = nearest_neighbours(out, train_x, k=1)
    assert dist.max() < 0.05


@pytest.mark.parametrize("formulation", [RF, VPF, EDMF], ids=lambda f: f.name)
def test_the_closed_form_has_a_lower_loss_on_the_training_images_than_a_network(formulation):
    train_x = _train_set()
    batch = FixedLossBatch.make(train_x, torch.zeros(8, dtype=torch.long), 256, torch.Generator().manual_seed(0))
    torch.manual_seed(0)   # the network's initialization
    net = UNet(4, 1, 0, channels=8, channel_mult=(1,), num_res_blocks=1, attn_resolutions=(), head_dim=8, emb_dim=16)
    torch.nn.init.normal_(net.out[-1].weight, std=0.1)   # a random field rather than zero
    memorized, _ = fixed_loss(formulation, formulation.memorizer(train_x), batch, 4)
    random, _ = fixed_loss(formulation, net, batch, 4)
    assert math.isfinite(memorized) and memorized < random


def test_the_three_closed_forms_agree_at_matched_noise_levels():
    """Each denoised estimate E[y | x] at the same SNR, on the same noisy point z = y + sigma eps scaled as each
    formulation scales its input: VP sqrt(alpha_bar) z, rectified flow t z with (1 - t) / t = sigma, EDM z."""
    train_x = _train_set(16)
    g = torch.Generator().manual_seed(2)
    for k in (50, 200, 400, 600):
        t_vp = torch.full((8,), 1 - k / VPF.T)
        a = VPF.abar(t_vp)
        sigma = ((1 - a) / a).sqrt()
        z = train_x[:8] + sigma.view(-1, 1, 1, 1) * torch.randn((8, 1, 4, 4), generator=g)
        t_rf, t_edm = 1 / (1 + sigma), EDMF.t_of(sigma)
        assert torch.allclose(RF.log_snr(t_rf), VPF.log_snr(t_vp), atol=1e-3)
        assert torch.allclose(EDMF.log_snr(t_edm), VPF.log_snr(t_vp), atol=1e-3)
        estimates = []
        for f, t, x in ((VPF, t_vp, a.sqrt().view(-1, 1, 1, 1) * z), (RF, t_rf, t_rf.view(-1, 1, 1, 1) * z),
                        (EDMF, t_edm, z)):
            estimates.append(f.denoised(x, t, f.closed_form(x, t, train_x)))
        assert torch.allclose(estimates[0], estimates[1], atol=2e-3), k
        assert torch.allclose(estimates[0], estimates[2], atol=2e-3), k


def test_log_snr_increases_with_t_for_each_formulation():
    t = torch.linspace(0.02, 0.98, 25)
    for f in (RF, VPF, EDMF):
        assert (f.log_snr(t).diff() >= 0).all() and f.log_snr(t)[-1] - f.log_snr(t)[0] > 5, f.name


def test_draw_t_stays_in_the_unit_interval_and_edm_follows_its_log_normal():
    g = torch.Generator().manual_seed(0)
    for f in (RF, VPF, EDMF):
        t = f.draw_t(4096, "cpu", g)
        assert t.min() >= 0 and t.max() <= 1, f.name
    log_sigma = EDMF.sigma(EDMF.draw_t(20000, "cpu", g)).log()
    assert abs(log_sigma.mean() + 1.2) < 0.05 and abs(log_sigma.std() - 1.2) < 0.05


def test_edm_heun_uses_2n_minus_1_evaluations():
    calls = []

    def model(x, t, y):
        calls.append(1)
        return torch.zeros_like(x)
    EDMF.sample(model, torch.randn(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), 18, "heun")
    assert len(calls) == 35


def test_a_sampler_of_another_objective_is_refused_in_one_line(out):
    with pytest.raises(ConfigError,
                       match=r"^eval.sampler=euler: objective vp samples with ddpm or ddim or ddim_bonnaire$"):
        config.compose_run(["objective=vp", "eval.sampler=euler"])
    with pytest.raises(ConfigError, match="objective.target=noise"):
        config.compose_run(["objective.target=noise"])
    res = run_cli("train", "objective=edm", "eval.sampler=ddim", "logger=none")
    assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1 and "eval.sampler=ddim" in res.stderr


def _their_ddim(eps_model, x, ddim_steps, T=1000):
    """Bonnaire et al. 2025's `sample_diffusion_from_noise_DDIM` (eta = 0) as their code runs it: a float32 schedule
    indexed from 0 (index i holds alpha_bar_{i+1}), steps np.linspace(0, T - 1, S, dtype=int) from the top, the
    network called with the index, no clipping, and the loop's last state (index 0) returned."""
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, T, dtype=torch.float32), 0)
    steps = list(np.linspace(0, T - 1, ddim_steps, dtype=int)[::-1])
    for i, i_prev in zip(steps[:-1], steps[1:]):
        eps = eps_model(x, i)
        x0_pred = (x - (1 - abar[i]).sqrt() * eps) / abar[i].sqrt()
        x = abar[i_prev].sqrt() * x0_pred + torch.clamp(1 - abar[i_prev], min=1e-8).sqrt() * eps
    return x


@pytest.mark.parametrize("steps", [20, 100])
def test_ddim_bonnaire_is_their_loop_and_differs_from_memsweeps_ddim(steps):
    """On the closed-form denoiser, eval.sampler=ddim_bonnaire gives their loop's samples (up to their float32
    cumulative product of the schedule against memsweep's float64: 5e-5 measured), in steps - 1 network evaluations;
    memsweep's DDIM (rounded steps, clipping, a last step to the clean estimate) ends on a training image where
    theirs keeps sqrt(1 - alpha_bar_1) = 0.01 of noise per pixel (measured: at 100 steps, theirs, 3.6e-2 apart at
    most and 8e-3 on average; at 20 steps one of the 64 samples ends on another training image)."""
    train_x = _train_set(16)
    x0 = torch.randn((64, 1, 4, 4), generator=torch.Generator().manual_seed(1))
    labels = torch.zeros(64, dtype=torch.long)
    memorizer = VPF.memorizer(train_x)
    calls = []

    def at_index(x, i):   # their network input: the 0-based index i of step k = i + 1
        calls.append(i)
        return memorizer(x, torch.full((len(x),), 1 - (int(i) + 1) / VPF.T), labels)
    theirs = _their_ddim(at_index, x0.clone(), steps)
    ours = VPF.sample(memorizer, x0, labels, steps, "ddim_bonnaire")
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
    assert len(calls) == steps - 1 == len(VPF.timesteps(steps, "ddim_bonnaire")) - 1
    assert VPF.timesteps(steps, "ddim_bonnaire") != VPF.timesteps(steps)   # truncated, not rounded
    ddim = VPF.sample(memorizer, x0, labels, steps, "ddim")
    assert nearest_neighbours(ddim, train_x, k=1)[0].max() < 1e-4
    assert (ddim - theirs).abs().max() > 1e-2 and nearest_neighbours(theirs, train_x, k=1)[0].min() > 1e-2


def test_ddim_bonnaire_is_refused_by_the_objectives_that_cannot_sample_with_it(out, capsys):
    for objective in ("rectified_flow", "edm"):
        assert main(["train", f"objective={objective}", "eval.sampler=ddim_bonnaire", "logger=none"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"eval.sampler=ddim_bonnaire: objective {objective} samples with" in err[0], err
    assert config.compose_run(["objective=vp", "eval.sampler=ddim_bonnaire"]).eval.sampler == "ddim_bonnaire"
    assert not out.exists()


def test_default_run_ids_are_unchanged(out):
    cfg = config.compose_run([])
    assert cfg.objective == identity.DEFAULT_OBJECTIVE and cfg.data.conditional is True
    older = OmegaConf.create(OmegaConf.to_container(cfg))   # as composed before the objective group and
    del older["objective"]                                  # data.conditional existed
    del older.data["conditional"]
    assert identity.run_id(older) == identity.run_id(cfg)
    assert identity.run_id(config.compose_run(["objective=rectified_flow", "data.conditional=true"])) == identity.run_id(cfg)
    # the demo's runs of before the objective group (its settings then, pinned in test_config) keep their ids
    assert {n: identity.run_id(config.compose_run([*OLD_DEMO, f"data.n={n}"])) for n in OLD_DEMO_IDS} == OLD_DEMO_IDS
    others = {identity.run_id(config.compose_run(o)) for o in
              (["objective=vp"], ["objective=edm"], ["objective.target=closed_form"], ["data.conditional=false"])}
    assert len(others) == 4 and identity.run_id(cfg) not in others


@pytest.mark.parametrize("overrides", [["objective=vp"], ["objective=vp", "eval.sampler=ddpm"], ["objective=edm"],
                                       ["objective.target=closed_form"], ["data.conditional=false"]],
                         ids=["vp-ddim", "vp-ddpm", "edm", "rf-closed-form", "unconditional"])
def test_a_short_run_of_each_objective_logs_finite_losses(out, overrides):
    cfg = config.compose_run([*BASE, *TINY, "eval.sampler_steps=4", *overrides])
    status = train(cfg)
    assert status["state"] == "finished" and status["step"] == 20
    rows = RunStore(identity.run_dir(cfg)).read_metrics()
    assert rows and all(math.isfinite(r[k]) for r in rows for k in ("train_loss", "test_loss", "field_dist"))
    assert all(math.isfinite(v) for r in rows for v in r["train_loss_by_t"])


def test_an_unconditional_run_has_no_classes_and_its_closed_form_is_over_all_images(out):
    cfg = config.compose_run([*FAST, "data.conditional=false"])
    assert pack_key(cfg) is not None and '"image": [8, 1, 0]' in pack_key(cfg)
    assert pack_key(config.compose_run([*FAST, "objective.target=closed_form"])) is None  # one run's training set
    with pytest.raises(ConfigError, match="guidance needs a conditional run"):
        config.compose_run([*FAST, "data.conditional=false", "eval.cfg_weight=1.0"])
    x, y = _train_set(6), torch.tensor([0, 1, 2, 0, 1, 2])
    data = Dataset(x, y, x, y, 3).unlabeled()
    assert data.num_classes == 0 and (data.train_y == 0).all()
    probe = FieldProbe.make(RF, data, 4, [0.5], seed=0)
    assert torch.allclose(probe.target, RF.closed_form(probe.x, probe.t, x))


def test_the_report_puts_every_objective_on_the_log_snr_axis(tmp_path):
    for f in (RF, VPF, EDMF):
        edges = snr_edges(f, 10)
        assert len(edges) == 11 and np.all(np.diff(edges) > 0) and np.all(np.isfinite(edges)), f.name
    assert run_formulation(SimpleNamespace(dir=tmp_path)).name == "rectified_flow"   # no config: an old run


@pytest.mark.parametrize("formulation", [VPF, EDMF], ids=lambda f: f.name)
def test_vp_and_edm_take_packed_shapes(formulation):
    """K packed models: x (B, K, C, H, W), t (B, K); copy k's loss is the loss of copy k alone."""
    g = torch.Generator().manual_seed(0)
    x1, x0, t = torch.randn((3, 2, 1, 4, 4), generator=g), torch.randn((3, 2, 1, 4, 4), generator=g), torch.rand(3, 2)
    model = lambda x, tt, y: 0.5 * x  # noqa: E731
    labels = torch.zeros(3, 2, dtype=torch.long)
    loss = formulation.loss_per_sample(model, x1, labels, x0, t)
    alone = formulation.loss_per_sample(model, x1[:, 1], labels[:, 1], x0[:, 1], t[:, 1])
    assert loss.shape == (3, 2) and torch.allclose(loss[:, 1], alone)


@pytest.mark.parametrize("formulation,method,steps", [(VPF, "ddim", 20), (VPF, "ddpm", 20), (EDMF, "heun", 8)],
                         ids=lambda v: getattr(v, "name", str(v)))
def test_the_probes_run_under_vp_and_edm(formulation, method, steps):
    """sample_field drives every probe: with the memorizer as the network, every hybrid sample is a copy, and the
    sampler records its state before each step, in increasing t."""
    train_x = _train_set(n=8)
    labels = torch.zeros(16, dtype=torch.long)
    inp = ProbeInputs(formulation, formulation.memorizer(train_x), torch.randn((16, 1, 4, 4)), labels, steps, method,
                      train_x, torch.zeros(8, dtype=torch.long), _train_set(n=8, seed=1))
    row, samples = run_probes(inp, settings=ProbeSettings(hybrid_tau=(0.0, 0.5, 1.0), els_patch=3))
    assert row["hybrid_mem_ratio"] == [1.0, 1.0, 1.0]
    assert len(row["traj_t"]) == (len(formulation.timesteps(steps)) if formulation is VPF else steps)
    assert all(a < b for a, b in zip(row["traj_t"], row["traj_t"][1:]))
    assert all(math.isfinite(v) for v in row["traj_state"] + row["traj_train"] + row["traj_test"])
    assert 0.0 <= row["els_mem_ratio"] <= 1.0 and math.isfinite(row["els_dist"])
