"""Bad input: one line naming the setting, exit 2, no traceback, nothing started or written."""
import pytest
import torch
import yaml

from memsweep.cli import main

BAD_TRAIN = [
    (["data.n=5000"], "data.n=5000"), (["data.n=0"], "data.n=0"), (["data.n=-4"], "data.n=-4"),
    (["train.batch_size=0"], "train.batch_size"), (["train.batch_size=-1"], "train.batch_size"),
    (["optim.lr=0"], "optim.lr"), (["optim.lr=-0.1"], "optim.lr"), (["train.steps=0"], "train.steps"),
    (["train.steps=null"], "train.steps"), (["train.steps=null", "train.epochs=-2"], "train.epochs"),
    (["model=giant"], "model=giant"), (["data=mnist"], "data=mnist"), (["logger=mlflow"], "logger=mlflow"),
    (["launcher=kubernetes"], "launcher=kubernetes"), (["data=cifar10", "data.root=/no/such/dir"], "data.root"),
    (["eval.num_samples=0"], "eval.num_samples"), (["eval.sampler_steps=0"], "eval.sampler_steps"),
    (["eval.fid_features=clip"], "eval.fid_features"), (["runtime.device=tpu"], "runtime.device"),
    (["paths.output_root=/etc/hostname/outputs"], "paths.output_root"), (["data.typo=1"], "data.typo"),
    (["train.dtype=float8"], "train.dtype"), (["seed=abc", "data.n=abc"], "data.n"),
    (["eval.copy_features=clip"], "eval.copy_features"), (["eval.sw_features=digitnet", "data=synthetic"],
                                                          "eval.sw_features"),
    (["eval.copy_features=torchscript:/no/such/sscd.pt"], "eval.copy_features"),
    (["eval.fid_samples=1"], "eval.fid_samples"), (["eval.fid_samples=all"], "eval.fid_samples"),
    (["eval.copy_threshold=1.5"], "eval.copy_threshold"), (["eval.bootstrap=-1"], "eval.bootstrap"),
    (["eval.nn_block=0"], "eval.nn_block"), (["eval.fd_train_test=maybe"], "eval.fd_train_test"),
    (["launcher.pack=0"], "launcher.pack"), (["launcher.pack=two"], "launcher.pack"),
    (["launcher=slurm", "launcher.pack=0"], "launcher.pack"),
]


@pytest.mark.parametrize("overrides, setting", BAD_TRAIN)
def test_bad_train_settings(overrides, setting, capsys, out):
    assert main(["train", *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("memsweep: error:") and setting in err[0], err
    assert not (out / "runs").exists()


@pytest.mark.parametrize("body, setting", [
    ({"axes": {"data.n": [8]}, "axis": {}}, "unknown key 'axis'"),
    ({"axes": {"data.n": []}}, "axes.data.n"),
    ({"axes": {"data.n": [8, 99999]}}, "data.n=99999"),
    ({"axes": {"data.n": [8]}, "overrides": ["train.batch_size=0"]}, "train.batch_size"),
])
def test_bad_sweeps(body, setting, tmp_path, capsys, out):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(body))
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and setting in err[0], err
    assert not out.exists()


def test_unknown_sweep_name(capsys):
    assert main(["sweep", "no_such_sweep"]) == 2
    assert "no_such_sweep" in capsys.readouterr().err


def test_status_of_a_sweep_never_launched(capsys, out):
    assert main(["status", "demo", "--output-root", str(out)]) == 2
    assert "not launched yet" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["no_such_run"], "no_such_run"), (["demo", "bogus"], "metric 'bogus'"),
    (["demo", "copy", "--features", "clip"], "--features=clip"), (["demo", "mem", "--num-samples", "x"], "--num-samples"),
    (["demo", "mem", "--steps", "middle"], "--steps=middle"), (["demo", "mem", "--threshold", "2"], "--threshold"),
    (["demo", "mem", "--device", "tpu"], "--device tpu"),
    *([] if torch.cuda.is_available() else [(["demo", "mem", "--device", "cuda"], "--device cuda")]),
])
def test_bad_eval_requests(args, message, capsys, out):
    out.mkdir()
    assert main(["eval", *args, "--output-root", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("memsweep: error:") and message in err[0], err
