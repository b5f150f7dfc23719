"""Hydra's compositions kept between commands (store.compositions): a kept base gives the config Hydra composes
with every override, an edited config file or another environment is never served stale, and a damaged or
unwritable cache only costs a composition."""
import os

from omegaconf import OmegaConf

from memsweep import config
from memsweep.cli import main
from memsweep.store import compositions, identity, user_cache

FAST = ["logger=none", "train.steps=20", "data.n=16"]
RUNS = [[], ["model=c32"], ["model=c32", "optim.lr=2e-3", "seed=3"], ["+experiment=paper_cifar10", "data.n=64", "train.epochs=null"],
        ["objective=vp", "data.n=32", "~data.download"], ["data.offset=${data.n}", "++train.ema_decay=0.99"]]


def kept_files():
    return sorted((user_cache.folder() / "compositions").rglob("*.pkl"))


def compose_all(runs, whole=False):
    with config.Composer(data_here=False, whole=whole) as compose:
        return [compose([*FAST, *r]) for r in runs], compose.composed, compose.parsed


def test_a_kept_base_gives_what_hydra_composes_with_every_override(out):
    first, composed, parsed = compose_all(RUNS)
    assert composed == 4 and parsed == len(set(FAST) | {o for r in RUNS for o in r})   # one base per choice of groups
    again, composed, parsed = compose_all(RUNS)     # a later command: nothing composed or parsed again
    assert composed == 0 and parsed == 0
    reference, composed, _ = compose_all(RUNS, whole=True)   # Hydra's compose with every override
    assert composed == len(RUNS)
    for a, b, c in zip(first, again, reference):
        assert OmegaConf.to_yaml(a) == OmegaConf.to_yaml(b) == OmegaConf.to_yaml(c)
        assert identity.run_id(a) == identity.run_id(b) == identity.run_id(c)
    assert len(kept_files()) == 4 + 1   # the bases and the parsed lines


def test_an_edited_config_file_is_composed_again(tmp_path, out):
    lab = tmp_path / "lab"
    (lab / "model").mkdir(parents=True)
    mine = lab / "model" / "mine.yaml"
    mine.write_text((config.config_dir() / "model" / "tiny.yaml").read_text().replace("channels:", "channels: 8 #"))
    config.use_config_dirs([lab])
    try:
        assert config.compose_run([*FAST, "model=mine"]).model.channels == 8
        with config.Composer() as compose:
            compose([*FAST, "model=mine"])
            assert compose.composed == 0
        mine.write_text(mine.read_text().replace("channels: 8 #", "channels: 16 #"))   # same size, new bytes
        with config.Composer() as compose:
            assert compose([*FAST, "model=mine"]).model.channels == 16
            assert compose.composed == 1
        (lab / "model" / "other.yaml").write_text("name: other\n")   # any new file on the search path, too
        with config.Composer() as compose:
            compose([*FAST, "model=mine"])
            assert compose.composed == 1
    finally:
        config.use_config_dirs([])


def test_the_environment_is_read_by_each_command(tmp_path, out, monkeypatch):
    """A kept base is unresolved: paths.output_root's ${oc.env:MEMSWEEP_OUTPUT_ROOT,outputs} is read each time."""
    assert config.compose_run(FAST).paths.output_root == str(out.resolve())
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("MEMSWEEP_OUTPUT_ROOT", str(elsewhere))
    with config.Composer() as compose:
        assert compose(FAST).paths.output_root == str(elsewhere.resolve())
        assert compose.composed == 0


def test_a_damaged_cache_is_composed_again_and_an_unwritable_one_is_not_needed(tmp_path, out, monkeypatch, capsys):
    expected = OmegaConf.to_yaml(config.compose_run(FAST))
    for path in kept_files():
        path.write_bytes(path.read_bytes()[:40])   # cut short, as by a full disk
    with config.Composer() as compose:
        assert OmegaConf.to_yaml(compose(FAST)) == expected
        assert compose.composed == 1 and compose.parsed == len(FAST)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))   # memsweep/ cannot be made under a file
    assert main(["train", *FAST, "--cfg", "job"]) == 0
    assert "data:" in capsys.readouterr().out
    assert blocked.read_text() == ""


def test_only_the_newest_fingerprints_are_kept(out):
    root = user_cache.folder() / "compositions"
    for k in range(compositions.KEEP + 4):
        old = root / f"old{k:02d}"
        old.mkdir(parents=True)
        os.utime(old, (1_000_000 + k, 1_000_000 + k))
    config.compose_run(FAST)
    left = sorted(d.name for d in root.iterdir())
    assert len(left) == compositions.KEEP
    assert [d for d in left if not d.startswith("old")]   # this command's
    assert "old00" not in left and f"old{compositions.KEEP + 3:02d}" in left
