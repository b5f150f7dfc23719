"""Typed settings (memsweep.schema): a wrong type or a value out of range fails at composition with one line
naming the key and what it accepts, exit 2, nothing written; the check never changes the config (run ids)."""
import copy
import inspect

import pytest
from omegaconf import OmegaConf

from memsweep import config, schema, shipped_configs
from memsweep.cli import main
from memsweep.errors import ConfigError
from memsweep.science import unet
from memsweep.store import identity
from memsweep.store.run import RunStore

# (overrides, the start of the one line that refuses them)
BAD = [
    (["seed=1.5"], "seed=1.5: must be an integer"),
    (["seed=1.5e30"], "seed=1.5e+30: must be an integer"),
    (["seed=-1"], "seed=-1: must be an integer in [0, 2^63)"),
    (["seed=true"], "seed=true: must be an integer"),
    (["optim.lr=nan"], "optim.lr=nan: must be a finite number > 0"),
    (["optim.lr=inf"], "optim.lr=inf: must be a finite number > 0"),
    (["optim.lr=-inf"], "optim.lr=-inf: must be a finite number > 0"),
    (["optim.lr=abc"], "optim.lr=abc: must be a finite number > 0"),
    (["eval.cfg_weight=abc"], "eval.cfg_weight=abc: must be a finite number"),
    (["eval.cfg_weight=nan"], "eval.cfg_weight=nan: must be a finite number"),
    (["runtime.threads=-1"], "runtime.threads=-1: must be an integer >= 1 or null"),
    (["runtime.threads=2.5"], "runtime.threads=2.5: must be an integer >= 1 or null"),
    (["runtime.device=tpu"], "runtime.device=tpu: must be auto, cpu, cuda or cuda:N"),
    (["runtime.progress=maybe"], "runtime.progress=maybe: must be true or false"),
    (["runtime.checkpoint_every=0"], "runtime.checkpoint_every=0: must be an integer >= 1"),
    (["data.n=1"], "data.n=1: must be an integer >= 2"),
    (["data.n=16.5"], "data.n=16.5: must be an integer >= 2"),
    (["data.offset=-1"], "data.offset=-1: must be an integer >= 0"),
    (["+data.typo=1"], "data.typo: unknown setting"),
    (["train.batch_size=1e3"], "train.batch_size=1000.0: must be an integer >= 1"),
    (["train.ema_decay=1.0"], "train.ema_decay=1.0: must be a finite number in [0, 1)"),
    (["train.label_dropout=-0.1"], "train.label_dropout=-0.1: must be a finite number in [0, 1)"),
    (["train.steps=null", "train.epochs=nan"], "train.epochs=nan: must be a finite number > 0 or null"),
    (["train.dtype=float16"], "train.dtype=float16: must be one of float32, bfloat16"),
    (["model.channels=0"], "model.channels=0: must be an integer >= 1"),
    (["model.dropout=1.5"], "model.dropout=1.5: must be a finite number in [0, 1)"),
    (["model.channel_mult=[]"], "model.channel_mult=[]: must be a non-empty list"),
    (["model.attn_resolutions=[a]"], "model.attn_resolutions=[a]: must be a list, each an integer >= 1"),
    (["optim.betas=[0.9]"], "optim.betas=[0.9]: must be a list of 2"),
    (["optim.grad_clip=0"], "optim.grad_clip=0: must be a finite number > 0 or null"),
    (["eval.field_t=[0.5,1.0]"], "eval.field_t=[0.5,1.0]: must be a list, each a finite number in [0, 1)"),
    (["eval.use_ema=1"], "eval.use_ema=1: must be true or false"),
    (["eval.mem_threshold=1"], "eval.mem_threshold=1: must be a finite number in (0, 1)"),
    (["eval.fid_samples=1"], "eval.fid_samples=1: must be reference, ref or an integer >= 2 or null"),
    (["eval.mifid_epsilon=0"], "eval.mifid_epsilon=0: must be a finite number in (0, 1]"),
    (["eval.sw_projections=0"], "eval.sw_projections=0: must be an integer >= 1"),
    (["logger.mode=on"], "logger.mode=on: must be one of online, offline, disabled"),
    (["launcher.workers=0"], "launcher.workers=0: must be an integer >= 1 or null"),
    (["launcher=slurm", "launcher.timeout_min=1.5"], "launcher.timeout_min=1.5: must be an integer >= 1"),
    (["launcher=slurm", "launcher.mem_gb=-4"], "launcher.mem_gb=-4: must be a finite number >= 0 or null"),
    (["data=synthetic", "data.spread=-1"], "data.spread=-1: must be a finite number >= 0"),
    (["data=folder", "data.order=random"], "data.order=random: must be one of auto, sorted, interleave"),
    (["data=folder", "data.size=0"], "data.size=0: must be an integer >= 1 or null"),
    (["data.conditional=maybe"], "data.conditional=maybe: must be true or false"),
    (["objective=vp", "objective.timesteps=1.5"], "objective.timesteps=1.5: must be an integer >= 1"),
    (["objective=vp", "objective.beta_end=0"], "objective.beta_end=0: must be a finite number in (0, 1)"),
    (["objective=edm", "objective.rho=nan"], "objective.rho=nan: must be a finite number > 0"),
    (["objective.target=noise"], "objective.target=noise: must be one of velocity, closed_form"),
    (["runtime.device=cuda:x"], "runtime.device=cuda:x: must be auto, cpu, cuda or cuda:N"),
    (["+probes.els_patch=4"], "probes.els_patch=4: must be an odd patch size, a non-empty list of them"),
    (["+probes.els_patch=[3,4]"], "probes.els_patch=[3,4]: must be an odd patch size, a non-empty list of them"),
    (["+probes.els_calibration_sizes=[]"], "probes.els_calibration_sizes=[]: must be a non-empty list of odd patch"),
    (["+probes.hybrid_tau=[1.5]"], "probes.hybrid_tau=[1.5]: must be a list, each a finite number in [0, 1]"),
    (["launcher=slurm", "launcher.additional_parameters=5"], "launcher.additional_parameters=5: must be a mapping"),
    (["model=local_cnn", "model._target_=''"], "model._target_=: must be an import path, module.Class or module.function"),
]


@pytest.mark.parametrize("overrides, message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_settings_are_refused_in_one_line(overrides, message, out, capsys):
    assert main(["train", *overrides]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"memsweep: error: {message}"), err
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()  # nothing written: no output root, no run directory


def _variants():
    """Composed configs of every option of the groups whose options differ (data read nowhere: planning)."""
    for overrides in ([], ["launcher=slurm"], ["logger=none"], ["data=cifar10"], ["data=synthetic"],
                      ["data=folder"], ["data=npz"], ["model=c32"], ["objective=vp"], ["objective=edm"]):
        cfg = config.compose_run(overrides, data_here=False)
        body = OmegaConf.to_container(cfg, resolve=True)
        body["train"].pop("total_steps")  # set after the check (config._checked), as the folder's shape is
        for key in ("image_size", "channels", "num_classes") if cfg.data.name in ("folder", "npz") else ():
            body["data"].pop(key)
        yield " ".join(overrides) or "default", body


def _leaves(body: dict, prefix=""):
    for key, value in body.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_every_settable_key_has_a_type(out):
    """One mechanism for every key: a nested list (no setting takes one) is refused for each key of every
    option, naming that key; a key no schema knows is refused too."""
    checked = 0
    for name, body in _variants():
        schema.check(body)  # the shipped configs pass
        for key, value in _leaves(body):
            if key.startswith("logger.") and key not in ("logger.name", "logger.mode", "logger.tags") \
                    or key == "launcher.additional_parameters":
                continue  # free-form: wandb settings, sbatch parameters
            bad = copy.deepcopy(body)
            *path, last = key.split(".")
            node = bad
            for p in path:
                node = node[p]
            node[last] = [[1]]
            with pytest.raises(ConfigError) as e:
                schema.check(bad)
            assert str(e.value).startswith(f"{key}=[[1]]: must be ") or str(e.value).startswith(
                f"{key.rsplit('.', 1)[0]}.name=") and last == "name", (name, key, str(e.value))
            checked += 1
        extra = copy.deepcopy(body)
        extra["eval"]["num_sample"] = 16
        with pytest.raises(ConfigError, match="eval.num_sample: unknown setting"):
            schema.check(extra)
    assert checked > 150


def test_the_check_changes_no_value_so_run_ids_stay(out):
    """Values keep the type the YAML or the command line gave them: an int lr stays an int, a float stays
    a float (the run id hashes them as given)."""
    cfg = config.compose_run(["optim.lr=1", "model.dropout=0", "eval.cfg_weight=0", "data.n=32"])
    assert type(cfg.optim.lr) is int and type(cfg.model.dropout) is int and type(cfg.eval.cfg_weight) is int
    default = config.compose_run([])
    assert type(default.optim.lr) is float and type(default.train.ema_decay) is float
    assert type(default.data.n) is int and type(default.eval.field_t[0]) is float
    body = OmegaConf.to_container(default, resolve=True)
    body["train"].pop("total_steps")
    before = copy.deepcopy(body)
    schema.check(body)
    assert body == before
    assert identity.run_id(config.compose_run([])) == identity.run_id(default)


def test_shipped_experiments_pass_the_schema(out, tmp_path):
    for experiment in sorted(p.stem for p in (config.config_dir() / "experiment").glob("*.yaml")):
        config.compose_run([f"+experiment={experiment}"], data_here=False)


def test_a_later_setting_has_its_default_in_the_yaml_only(out, tmp_path):
    """The schema holds no second default: a setting a config may lack is marked LATER, and a config that lacks it
    (written before it existed) reads the YAML's value when used (eval, runtime); the config as composed, hence
    its run id, is left alone. The one default the schema writes, model.resample's (absent from the model configs
    to keep run ids), is the U-Net's."""
    for group, found in [*schema.GROUPS.items(), ("", schema.Top), ("model", schema.TargetModel)]:
        for model in found.values() if isinstance(found, dict) else [found]:
            for name, setting in model.settings.items():
                assert setting.required or setting.default is schema.LATER or (model, name) == (schema.Model, "resample"), (
                    f"{group}.{name}: a default in the schema")
    assert schema.Model.settings["resample"].default == inspect.signature(unet.UNet).parameters["resample"].default
    cfg = config.compose_run(["data.n=16"])
    stored = OmegaConf.to_container(cfg, resolve=True)
    for key in ("kid_features", "copy_threshold", "bootstrap", "fd_train_test", "nn_block"):
        del stored["eval"][key]
    del stored["runtime"]["processes"]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(stored)))
    read = RunStore(tmp_path / "run").read_config()
    shipped = OmegaConf.load(shipped_configs.config_dir() / "eval" / "default.yaml")
    for key in ("kid_features", "copy_threshold", "bootstrap", "fd_train_test", "nn_block"):
        assert read.eval[key] == shipped[key], key
    assert read.runtime.processes == OmegaConf.load(shipped_configs.config_dir() / "runtime" / "default.yaml").processes
    assert "kid_features" not in RunStore(tmp_path / "run").read_config_data()["eval"]   # the file is untouched
