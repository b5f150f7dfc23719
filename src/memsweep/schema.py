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

A schema is a class whose annotations are its settings: a type, its range as metadata (Annotated[int, Ge(1)],
named as annotated_types names them). The check is written here rather than by pydantic (which it was, with the
same messages): building pydantic's models and loading its plugins took 0.065 s of every command that composes
a config, more than Hydra's composition itself (docs/measurements.md, 2026-12-03), for a check of a handful of
types that reads 35 lines.
"""
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from memsweep.errors import ConfigError


class Constraint:
    """A rule a setting's value keeps, as annotation metadata (Annotated[int, Ge(1)]). Plain classes named as
    annotated_types names them: its 30 dataclasses took 4.6 ms to import, a tenth of a dry run's imports."""
    __slots__ = ()

    def holds(self, value) -> bool:
        raise NotImplementedError


class Ge(Constraint):
    __slots__ = ("ge",)

    def __init__(self, ge):
        self.ge = ge

    def holds(self, value) -> bool:
        return value >= self.ge


class Gt(Constraint):
    __slots__ = ("gt",)

    def __init__(self, gt):
        self.gt = gt

    def holds(self, value) -> bool:
        return value > self.gt


class Le(Constraint):
    __slots__ = ("le",)

    def __init__(self, le):
        self.le = le

    def holds(self, value) -> bool:
        return value <= self.le


class Lt(Constraint):
    __slots__ = ("lt",)

    def __init__(self, lt):
        self.lt = lt

    def holds(self, value) -> bool:
        return value < self.lt


class MinLen(Constraint):
    __slots__ = ("min_length",)

    def __init__(self, min_length: int):
        self.min_length = min_length

    def holds(self, value) -> bool:
        return len(value) >= self.min_length


class Len(Constraint):
    __slots__ = ("min_length", "max_length")

    def __init__(self, min_length: int, max_length: int):
        self.min_length, self.max_length = min_length, max_length

    def holds(self, value) -> bool:
        return self.min_length <= len(value) <= self.max_length


class Predicate(Constraint):
    __slots__ = ("func",)

    def __init__(self, func):
        self.func = func

    def holds(self, value) -> bool:
        return bool(self.func(value))


@dataclass(frozen=True)
class Words:
    """What a setting accepts, in words, where its type says it badly (annotation metadata)."""
    description: str


@dataclass(frozen=True)
class Alias:
    """The setting's key in the config when it is not a Python name (`_target_`)."""
    key: str


def _metadata(tp) -> tuple:
    return typing.get_args(tp)[1:] if typing.get_origin(tp) is Annotated else ()


# -- the types of settings ----------------------------------------------------------------------------------
PosInt = Annotated[int, Ge(1)]
Count = Annotated[int, Ge(0)]
Number = float                          # every float setting is finite (_accepts)
Positive = Annotated[float, Gt(0)]
NonNegative = Annotated[float, Ge(0)]
Fraction = Annotated[float, Ge(0), Lt(1)]    # [0, 1): probabilities, decays
OpenUnit = Annotated[float, Gt(0), Lt(1)]    # (0, 1): a VP step's beta
Seed = Annotated[int, Ge(0), Lt(2 ** 63)]


# A setting that a config may lack (it came after configs were first stored, or its group is optional): absent, it
# takes the value in configs/<group>/default.yaml (shipped_configs.complete) or, for the probes, which have no YAML,
# in metrics.probe_settings.ProbeSettings: the one place each default is written. The schema only lets the setting
# be absent (the check never reads a setting's default).
LATER: Any = None
REQUIRED: Any = ...   # a setting every config has


@dataclass(frozen=True)
class Setting:
    """One setting of a schema: its name, its key in the config (the name unless an Alias gives another), its type
    (with its range) and its default (REQUIRED: a config must have it)."""
    name: str
    key: str
    type: Any
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


class Group:
    """A config group's schema: each annotated class attribute a setting, in order (a subclass's settings after
    its parent's), its value if any the default. `extra`: keys beyond the settings are allowed and passed on."""
    extra: ClassVar[bool] = False
    settings: ClassVar[dict[str, Setting]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        settings = dict(cls.settings)
        for name, tp in cls.__dict__.get("__annotations__", {}).items():
            if typing.get_origin(tp) is ClassVar:
                continue
            alias = next((m.key for m in _metadata(tp) if isinstance(m, Alias)), name)
            settings[name] = Setting(name, alias, tp, cls.__dict__.get(name, REQUIRED))
        cls.settings = settings


# -- data ------------------------------------------------------------------------------------------------
class _Data(Group):
    name: str
    n: Annotated[int, Ge(2)]            # the 1/3 rule needs a nearest and a second-nearest image
    offset: Count
    test_size: Annotated[int, Ge(2)]
    conditional: bool = True               # false: unconditional (no labels)


class _Builtin(_Data):
    image_size: PosInt
    channels: PosInt
    num_classes: PosInt
    root: Optional[str] = None
    download: bool = False


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
    path: Optional[str] = None
    test_path: Optional[str] = None
    grayscale: bool = False
    size: Optional[PosInt] = None
    order: Literal["auto", "sorted", "interleave"] = "sorted"   # auto: resolved from the files (data.folder.resolved)


class Npz(_Data):
    name: Literal["npz"]
    path: Optional[str] = None


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
    name: Optional[str] = None


class Adam(Group):
    name: Literal["adam"]
    lr: Positive
    betas: Annotated[list[Fraction], Len(2, 2)]
    eps: Positive
    weight_decay: NonNegative
    grad_clip: Optional[Positive] = None


class Train(Group):
    batch_size: PosInt
    steps: Optional[PosInt] = None         # exactly one of steps, epochs, images (config.total_steps)
    epochs: Optional[Positive] = None
    images: Optional[Positive] = None
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
    target: Literal["velocity", "closed_form"] = "velocity"


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
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: list[str] = []


class NoLogger(Group):
    extra = True
    name: Literal["none"]


class Local(Group):
    name: Literal["local"]
    workers: Optional[PosInt] = None
    pack: PosInt = 1


class Slurm(Group):
    name: Literal["slurm"]
    pack: PosInt = 1
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    timeout_min: PosInt
    gpus_per_node: Count
    cpus_per_task: PosInt
    mem_gb: Optional[NonNegative] = None
    max_array_size: PosInt
    array_parallelism: PosInt
    signal_delay_s: Count
    additional_parameters: dict[str, Any] = {}
    folder: Optional[str] = None


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
            raise ConfigError(f"{group}={_show(value)}: must be a config group ({group}=NAME or {group}.KEY=VALUE)")
        if group == "model" and "_target_" in value:   # a network named by _target_, not memsweep's U-Net
            schema = TargetModel
        elif isinstance(schema, dict):
            name = value.get("name")
            if not isinstance(name, str) or name not in schema:
                raise ConfigError(f"{group}.name={_show(name)}: unknown {group} (known: {', '.join(schema)})")
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
        elif not _accepts(setting.type, value[setting.key]):
            raise ConfigError(f"{where}{setting.key}={_show(value[setting.key])}: must be {accepts(setting)}")
    if not schema.extra:
        keys = {s.key for s in schema.settings.values()}
        for key in value:
            if key not in keys:
                raise ConfigError(f"{where}{key}: unknown setting ({prefix or 'the config'} has: "
                                  f"{', '.join(schema.settings)})")


def _accepts(tp, value) -> bool:
    """Whether a value is of a type and in its range, strictly: no conversion (an int is no bool, a float no int,
    a number finite)."""
    meta = _metadata(tp)
    if meta:
        tp = typing.get_args(tp)[0]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        ok = True
    elif origin in (Union, types.UnionType):
        ok = any(_accepts(arm, value) for arm in args)
    elif origin is Literal:
        ok = any(type(value) is type(a) and value == a for a in args)
    elif origin is list:
        ok = isinstance(value, list) and all(_accepts(args[0], v) for v in value)
    elif origin is dict or tp is dict:
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:   # bool, str, NoneType
        ok = isinstance(value, tp)
    return ok and all(m.holds(value) for m in meta if isinstance(m, Constraint))





def accepts(setting: Setting) -> str:
    """What a setting accepts, in words: its Words, else its type and range."""
    return _describe(setting.type)


def _show(value) -> str:
    """A value as one writes it on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value)


def _bounds(meta) -> str:
    lo = next((m for m in meta if isinstance(m, (Ge, Gt))), None)
    hi = next((m for m in meta if isinstance(m, (Le, Lt))), None)
    if lo is not None and hi is not None:
        a, b = (lo.ge if isinstance(lo, Ge) else lo.gt), (hi.le if isinstance(hi, Le) else hi.lt)
        b = "2^63" if b == 2 ** 63 else f"{b:g}"
        return f" in {'[' if isinstance(lo, Ge) else '('}{a:g}, {b}{']' if isinstance(hi, Le) else ')'}"
    if lo is not None:
        return f" >= {lo.ge:g}" if isinstance(lo, Ge) else f" > {lo.gt:g}"
    if hi is not None:
        return f" <= {hi.le:g}" if isinstance(hi, Le) else f" < {hi.lt:g}"
    return ""


def _describe(tp, meta=()) -> str:
    """What a type accepts, in words: 'an integer >= 1 or null', 'one of float32, bfloat16', ..."""
    meta = list(meta)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        base, *extra = args
        description = next((getattr(m, "description", None) for m in extra if getattr(m, "description", None)), None)
        return description or _describe(base, [*meta, *extra])
    if origin in (Union, types.UnionType):
        parts = [", ".join(map(str, typing.get_args(a))) if typing.get_origin(a) is Literal else _describe(a)
                 for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(map(str, args)) if len(args) > 1 else str(args[0])
    if origin is list:
        length = next((m for m in meta if isinstance(m, Len)), None)
        least = next((m.min_length for m in meta if isinstance(m, MinLen)), 0)
        count = f" of {length.min_length}" if length and length.min_length == length.max_length else ""
        return f"a {'non-empty ' if least else ''}list{count}, each {_describe(args[0])}"
    if origin is dict or tp is dict:
        return "a mapping"
    words = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
    return words.get(tp, getattr(tp, "__name__", str(tp))) + ("" if tp is bool else _bounds(meta))
