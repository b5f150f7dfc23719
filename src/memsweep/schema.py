"""The type and range of every setting, one schema per config group (strict).

A composed config is checked against its group's schema right after Hydra composes it, before anything is
read or written: a value of the wrong type or out of range, or a key no schema knows, fails with one line
naming the key and what it accepts (`seed=1.5: must be an integer in [0, 2^63)`). The check only reads the
config: it never converts a value (an int stays an int, a float a float, as the YAML or the command line gave
it), so run ids, hashes of the config as composed, are what they were. (Hydra's structured configs would
convert, e.g. optim.lr=1 into 1.0, and give existing runs other ids; they also have no ranges.)

Strict: an integer setting takes no float (1.5, 1.5e30), a number takes integers and floats but not nan or
inf, true/false take only booleans, strings only strings. A group whose options differ in their keys (data,
logger, launcher, objective) has one schema per option, chosen by its `name`. Checks across keys (n against
the dataset's size, the sampler against the objective, ...) stay in config.validate.

A schema is a class whose annotations are its settings: a type, and its range as metadata (Annotated[int, Ge(1)];
memsweep.setting_types: how a schema is written and checked).
"""
import re
from typing import Annotated, Any, Literal, Optional, Union

from memsweep.errors import ConfigError
from memsweep.setting_types import (Alias, Ge, Group, Gt, Le, Len, Lt, MinLen, Predicate, Setting, Words, accepted,
                                    describe, value_text)


# -- the types of settings ----------------------------------------------------------------------------------
PosInt = Annotated[int, Ge(1)]
Count = Annotated[int, Ge(0)]
Number = float                          # every float setting is finite (setting_types.accepted)
Positive = Annotated[float, Gt(0)]
NonNegative = Annotated[float, Ge(0)]
Fraction = Annotated[float, Ge(0), Lt(1)]    # [0, 1): probabilities, decays
OpenUnit = Annotated[float, Gt(0), Lt(1)]    # (0, 1): a VP step's beta
Seed = Annotated[int, Ge(0), Lt(2 ** 63)]


# A setting that a config may lack (it came after configs were first stored, its group is optional, or one of its
# alternatives is set): the schema only lets it be absent, it holds no default. A composed config has the value of
# its YAML (configs/); a stored one lacking it reads configs/<group>/default.yaml for eval and runtime
# (shipped_configs.complete), metrics.probe_settings.ProbeSettings for the probes, else the default of the code that
# reads it (data.sources.is_conditional: runs before data.conditional were conditional). One exception: model.resample
# is absent from the model configs (adding it would change run ids), so its default, the U-Net's, is written here
# for the config reference too (tests/test_schema.py checks the two agree).
LATER: Any = None


# -- data ------------------------------------------------------------------------------------------------
class _Data(Group):
    name: str
    n: Annotated[int, Ge(2)]            # the 1/3 rule needs a nearest and a second-nearest image
    offset: Count
    test_size: Annotated[int, Ge(2)]
    conditional: bool = LATER               # false: unconditional (no labels)


class _Builtin(_Data):
    image_size: PosInt
    channels: PosInt
    num_classes: PosInt
    root: Optional[str] = LATER
    download: bool = LATER


class Digits(_Builtin):
    name: Literal["digits"]


class Cifar10(_Builtin):
    name: Literal["cifar10"]


class Synthetic(_Builtin):
    name: Literal["synthetic"]
    pool_size: PosInt
    spread: NonNegative
    data_seed: Seed


class Folder(_Data):
    name: Literal["folder"]
    path: Optional[str] = LATER
    test_path: Optional[str] = LATER
    grayscale: bool = LATER
    size: Optional[PosInt] = LATER
    order: Literal["auto", "sorted", "interleave"] = LATER   # auto: resolved from the files (data.folder.resolved)


class Npz(_Data):
    name: Literal["npz"]
    path: Optional[str] = LATER


# -- model, optimizer, training, evaluation -----------------------------------------------------------------
class Model(Group):
    name: str
    channels: PosInt
    channel_mult: Annotated[list[PosInt], MinLen(1)]
    num_res_blocks: PosInt
    attn_resolutions: list[PosInt]
    head_dim: PosInt
    emb_dim: PosInt
    dropout: Fraction
    resample: Literal["conv", "resblock"] = "conv"   # between levels (science.unet.UNet); absent from older configs


class TargetModel(Group):
    """Any network, named by Hydra's `_target_` (science.networks, docs/networks.md): its keyword arguments are
    the target's own (any keys; config.validate builds and runs it once), `name` is memsweep's label for it."""
    extra = True
    target: Annotated[str, Alias("_target_"), MinLen(1), Words("an import path, module.Class or module.function")]
    name: Optional[str] = LATER


class Adam(Group):
    name: Literal["adam"]
    lr: Positive
    betas: Annotated[list[Fraction], Len(2, 2)]
    eps: Positive
    weight_decay: NonNegative
    grad_clip: Optional[Positive] = LATER


class Train(Group):
    batch_size: PosInt
    steps: Optional[PosInt] = LATER         # exactly one of steps, epochs, images (config.total_steps)
    epochs: Optional[Positive] = LATER
    images: Optional[Positive] = LATER
    ema_decay: Fraction
    label_dropout: Fraction
    dtype: Literal["float32", "bfloat16"]


Space = Annotated[str, Words("pixels, inception, digitnet, torchscript:[<name>=]<path> or none")]


class Eval(Group):
    num_points: PosInt
    first_step: Count
    use_ema: bool
    noise_seed: Seed
    loss_points: PosInt
    t_bins: PosInt
    num_samples: PosInt
    sampler: str                            # one of the objective's samplers (config.validate)
    sampler_steps: PosInt
    cfg_weight: Number
    mem_threshold: OpenUnit
    field_points: Count
    field_t: list[Fraction]
    sw_features: Space
    sw_projections: PosInt
    sw_seed: Seed
    fid_features: Space
    fid_samples: Union[None, Literal["reference", "ref"], Annotated[int, Ge(2)]] = LATER
    fd_train_test: bool
    copy_features: Space = LATER
    copy_threshold: Annotated[float, Gt(-1), Lt(1)] = LATER
    kid_features: Space = LATER
    kid_subsets: PosInt = LATER
    kid_subset_size: Annotated[int, Ge(2)] = LATER
    mifid_features: Space = LATER
    mifid_epsilon: Annotated[float, Gt(0), Le(1)] = LATER
    bootstrap: Count = LATER
    feature_cache: bool = LATER
    nn_block: PosInt = LATER
    inception_path: Optional[str] = LATER
    grid_samples: Count = LATER
    save_samples: bool = LATER
    save_weights: bool = LATER


# -- objective (configs/objective/, issue 13): absent from configs written before it -------------------------
class RectifiedFlow(Group):
    name: Literal["rectified_flow"]
    target: Literal["velocity", "closed_form"] = LATER


class VP(Group):
    name: Literal["vp"]
    beta_start: OpenUnit                   # the rules across settings: objective_settings.check
    beta_end: OpenUnit
    timesteps: PosInt


class EDM(Group):                          # the rules across settings: objective_settings.check
    name: Literal["edm"]
    sigma_data: Positive
    p_mean: Number
    p_std: Positive
    sigma_min: Positive
    sigma_max: Positive
    rho: Positive


# -- the probes (metrics.probes; `+probes.KEY=VALUE`): what `memsweep eval RUN els` and the report compute -----
def _odd(k: int) -> bool:
    return k % 2 == 1   # an even patch has no centre pixel


Odd = Annotated[int, Ge(1), Predicate(_odd)]


class Probes(Group):
    """Not part of the run id (they only add keys to the rows); absent from the shipped configs."""
    # a setting left out takes its default from metrics.probe_settings.ProbeSettings (LATER)
    hybrid_tau: list[Annotated[float, Ge(0), Le(1)]] = LATER
    els: bool = LATER
    els_patch: Annotated[Union[Literal["calibrated"], Odd, Annotated[list[Odd], MinLen(1)]], Words(
        "an odd patch size, a non-empty list of them (per equal bin of t) or calibrated")] = LATER
    els_equivariant: bool = LATER
    els_padding: Literal["zeros", "circular"] = LATER
    els_bank: Literal["padded", "interior"] = LATER
    els_calibration_sizes: Annotated[list[Odd], MinLen(1), Words("a non-empty list of odd patch sizes")] = LATER
    els_calibration_samples: PosInt = LATER
    traj_seed: Seed = LATER


# -- how a run is logged, launched and executed (not part of its id) --------------------------------------------
class Wandb(Group):
    extra = True   # free-form wandb settings a lab adds (+logger.KEY=)
    name: Literal["wandb"]
    mode: Literal["online", "offline", "disabled"]
    project: str
    entity: Optional[str] = LATER
    group: Optional[str] = LATER
    tags: list[str] = LATER


class NoLogger(Group):
    extra = True
    name: Literal["none"]


class Local(Group):
    name: Literal["local"]
    workers: Optional[PosInt] = LATER
    pack: PosInt = LATER


class Slurm(Group):
    name: Literal["slurm"]
    pack: PosInt = LATER
    partition: Optional[str] = LATER
    account: Optional[str] = LATER
    qos: Optional[str] = LATER
    constraint: Optional[str] = LATER
    timeout_min: PosInt
    gpus_per_node: Count
    cpus_per_task: PosInt
    mem_gb: Optional[NonNegative] = LATER
    max_array_size: PosInt
    array_parallelism: PosInt
    signal_delay_s: Count
    additional_parameters: dict[str, Any] = LATER
    folder: Optional[str] = LATER


class Paths(Group):
    output_root: str


class Runtime(Group):
    device: Annotated[str, Predicate(re.compile(r"auto|cpu|cuda(:\d+)?").fullmatch), Words("auto, cpu, cuda or cuda:N")]
    threads: Optional[PosInt] = LATER
    progress: bool = LATER
    checkpoint_every: PosInt
    keep_checkpoints: PosInt
    channels_last: bool = LATER
    compile: Union[bool, Annotated[str, Words("a torch.compile backend name")]] = LATER
    fused_adam: bool = LATER
    processes: PosInt = LATER   # one run on K processes (DDP, one per device): docs/guides/runs.md


# group -> its schema, or {option name: schema} for groups whose options differ; in the order they are checked
GROUPS: dict[str, type[Group] | dict[str, type[Group]]] = {
    "data": {"digits": Digits, "cifar10": Cifar10, "synthetic": Synthetic, "folder": Folder, "npz": Npz},
    "model": Model,
    "optim": {"adam": Adam},
    "train": Train,
    "eval": Eval,
    "objective": {"rectified_flow": RectifiedFlow, "vp": VP, "edm": EDM},
    "logger": {"wandb": Wandb, "none": NoLogger},
    "launcher": {"local": Local, "slurm": Slurm},
    "paths": Paths,
    "runtime": Runtime,
    "probes": Probes,
}


class Top(Group):
    """The settings outside the groups."""
    seed: Seed


OPTIONAL = {"objective", "probes"}   # groups a config may lack (runs composed before the group existed)


# -- checking ---------------------------------------------------------------------------------------------
def check(config: dict) -> None:
    """Refuse the first setting of a composed config (a plain dict, resolved) that its schema does not accept,
    with one line naming it and what it accepts."""
    for key in config:
        if key not in GROUPS and key not in Top.settings:
            raise ConfigError(f"{key}: unknown setting (the settings are {', '.join([*GROUPS, *Top.settings])})")
    for group, schema in GROUPS.items():
        if group not in config:
            if group in OPTIONAL:
                continue
            raise ConfigError(f"{group}: missing (a config group: {group}=NAME)")
        value = config[group]
        if not isinstance(value, dict):
            raise ConfigError(f"{group}={value_text(value)}: must be a config group ({group}=NAME or {group}.KEY=VALUE)")
        if group == "model" and "_target_" in value:   # a network named by _target_, not memsweep's U-Net
            schema = TargetModel
        elif isinstance(schema, dict):
            name = value.get("name")
            if not isinstance(name, str) or name not in schema:
                raise ConfigError(f"{group}.name={value_text(name)}: unknown {group} (known: {', '.join(schema)})")
            schema = schema[name]
        _validate(schema, value, group)
    top = {k: v for k, v in config.items() if k not in GROUPS}
    _validate(Top, top, "")


def _validate(schema: type[Group], value: dict, prefix: str) -> None:
    """The first setting, in the schema's order, that is missing or not accepted, then the first unknown key:
    `<key>=<value>: must be <what the setting accepts>`."""
    where = f"{prefix}." if prefix else ""
    for setting in schema.settings.values():
        if setting.key not in value:
            if setting.required:
                raise ConfigError(f"{where}{setting.key}: missing ({accepts(setting)})")
        elif not accepted(setting.type, value[setting.key]):
            raise ConfigError(f"{where}{setting.key}={value_text(value[setting.key])}: must be {accepts(setting)}")
    if not schema.extra:
        keys = {s.key for s in schema.settings.values()}
        for key in value:
            if key not in keys:
                raise ConfigError(f"{where}{key}: unknown setting ({prefix or 'the config'} has: "
                                  f"{', '.join(schema.settings)})")


def accepts(setting: Setting) -> str:
    """What a setting accepts, in words: its Words, else its type and range."""
    return describe(setting.type)
