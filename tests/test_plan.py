"""Planning without the data (dry runs, Slurm submissions) and the cost a dry run prints (memsweep.sweeps.cost)."""
import math

import pytest
import torch
import yaml
from omegaconf import OmegaConf
from torch import nn

from memsweep import config
from memsweep.cli import main
from memsweep.science import unet
from memsweep.science.unet import Attention
from memsweep.sweeps import cost, flops, gpus, spec

from conftest import FAST


@pytest.fixture
def no_cifar(monkeypatch):
    monkeypatch.delenv("CIFAR10_ROOT", raising=False)


def test_dataset_size_dry_run_without_cifar10_prints_gpu_hours(out, no_cifar, capsys):
    assert main(["sweep", "dataset_size", "--dry-run", "--gpu", "h100"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "warning: data.root=None: no cifar-10-batches-py folder there" in text and "planned without it" in text
    assert "4 runs" in text and "GPU-hours on h100" in text and "assumed utilization 30%" in text
    hours = float(text.split("estimate: ")[1].split()[0])
    assert hours > 0
    assert not out.exists()  # a dry run writes nothing


def test_a_local_launch_still_needs_cifar10_here_and_writes_no_run(out, no_cifar, capsys):
    assert main(["sweep", "dataset_size", "train.epochs=1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.root=None" in err[0], err
    assert not (out / "runs").exists() and not (out / "sweeps").exists()


def test_a_folder_not_here_is_a_warning_when_planning_and_refused_when_launching(tmp_path, out, capsys):
    where = tmp_path / "not_here"
    args = ["sweep", "demo", "data=folder", f"data.path={where}", "data.size=8", "data.grayscale=true"]
    assert main([*args, "--dry-run", "--gpu", "a100"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"data.path={where}: no such folder" in text and "provisional" in text and "GPU-hours on a100" in text
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.path" in err[0] and "fingerprint" in err[0], err
    assert not out.exists() or not (out / "runs").exists()


def test_an_unknown_gpu_is_one_line(out, capsys):
    assert main(["sweep", "demo", "--dry-run", "--gpu", "tpu9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--gpu tpu9" in err[0] and "h100" in err[0]


def test_conv_flops_match_the_hand_count():
    """One 3x3 convolution: 2 Cin Cout k^2 H W FLOPs per image."""
    cin, cout, k, h = 3, 8, 3, 16
    with torch.device("meta"):
        conv, x = nn.Conv2d(cin, cout, k, padding=1), torch.empty(2, cin, h, h)
    assert flops.count(conv, x) == 2 * 2 * cin * cout * k * k * h * h


def _hand_count(model: unet.UNet, size: int, channels: int) -> int:
    """Forward FLOPs of one sample counted independently: forward hooks on a real CPU forward add up
    2 x (multiply-adds) of every convolution (Cin/groups x Cout x k^2 x Hout x Wout), linear layer (in x out)
    and attention (q k^T and attn v: 2 x L^2 x C multiply-adds)."""
    total = []

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total.append(2 * module.in_channels // module.groups * module.out_channels * kh * kw
                         * output.shape[-2] * output.shape[-1])
        elif isinstance(module, nn.Linear):
            total.append(2 * module.in_features * module.out_features)
        elif isinstance(module, Attention):
            c, length = inputs[0].shape[1], inputs[0].shape[2] * inputs[0].shape[3]
            total.append(2 * 2 * length * length * c)
    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(1, channels, size, size), torch.full((1,), 0.5), torch.zeros(1, dtype=torch.long))
    for h in handles:
        h.remove()
    return sum(total)


@pytest.mark.parametrize("name, size, channels", [("tiny", 8, 1), ("c32", 16, 3)])
def test_unet_forward_flops_match_an_independent_count(name, size, channels):
    model_cfg = OmegaConf.load(config.config_dir() / "model" / f"{name}.yaml")
    model_cfg.attn_resolutions = [size // 2]  # attention at a level below the top: counted both ways
    hand = _hand_count(unet.build(model_cfg, size, channels, 10), size, channels)
    assert flops.forward_flops(model_cfg, size, channels, 10) == hand


def test_sampler_calls_are_counted_by_running_the_sampler():
    flow = {"name": "rectified_flow"}
    assert flops.sampler_evaluations(flow, "euler", 20) == 20
    assert flops.sampler_evaluations(flow, "heun", 20) == 39  # the last step stays Euler


def test_run_cost_by_part(out):
    cfg = config.compose_run([*FAST, "eval.sampler=heun", "eval.sampler_steps=5", "eval.cfg_weight=1.0"])
    c = cost.run_cost(cfg)
    F = flops.forward_flops(cfg.model, 8, 1, 10)
    assert c.forward == F and c.evaluations == 4
    assert c.train == 3 * F * cfg.train.batch_size * cfg.train.total_steps
    assert c.parts["sampling"] == 4 * cfg.eval.num_samples * 9 * F * 2  # heun 5 steps = 9 calls, x2 for guidance
    assert c.parts["losses"] == 4 * 2 * cfg.eval.loss_points * F
    n, d = cfg.data.n, 64
    assert c.parts["mem_ratio"] == 4 * 2 * cfg.eval.num_samples * n * d
    # the GPU table: hours = FLOPs / (peak x utilization)
    bf16, tf32, _ = gpus.GPUS["a100"]
    assert math.isclose(cost.hours(1e15, 0.0, "bfloat16", "a100", 0.5), 1e15 / (bf16 * 1e12 * 0.5) / 3600)
    assert math.isclose(cost.hours(0.0, 1e15, "float32", "a100", 0.5), 1e15 / (tf32 * 1e12 * 0.5) / 3600)


def test_inception_features_and_references_counted_once_per_sweep(tmp_path, out):
    """Reference features are cached: the test subset's are shared by every n, the training subsets' are not."""
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"axes": {"data.n": [16, 32], "model": ["tiny", "c32"]},
                                    "overrides": [*FAST, "eval.fid_features=inception"]}))
    sweep = spec.expand(str(path), data_here=False)
    counts = cost.counts_for(cost.counts_file())
    costs = [cost.run_cost(r.cfg) for r in sweep.runs]
    # one forward count per architecture (4 runs), one per feature space (pixels, inception), one sampler's
    assert counts.made == 5
    inception = flops.feature_flops("inception")
    assert 10e9 < inception < 13e9  # InceptionV3 at 299x299: ~5.7 G multiply-adds
    per_run = costs[0].parts["features"] / costs[0].evaluations
    assert per_run == sweep.runs[0].cfg.eval.num_samples * inception
    _, parts = cost.total(costs)
    test_size = sweep.runs[0].cfg.data.test_size
    assert parts["references"] == (16 + 32 + test_size) * inception
