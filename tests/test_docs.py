"""The manual stays true to the code: the config reference is the one the schema and configs write, every metric
key the metric reference lists is one an evaluation writes, every link in the README and docs/ leads somewhere,
and the README keeps its two commands first."""
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from memsweep import config, reference, schema
from memsweep.cli import main
from memsweep.train.wandb_logger import WandbLogger

from conftest import FAST, evaluated_run

pytestmark = pytest.mark.xdist_group("test_docs")   # its module fixture evaluates once, on one worker

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]


def test_the_config_reference_is_the_one_the_schema_and_configs_write(monkeypatch):
    monkeypatch.delenv(config.CONFIG_PATH_ENV, raising=False)
    monkeypatch.delenv("MEMSWEEP_CONFIG_DIR", raising=False)
    config.use_config_dirs(())
    page = ROOT / "docs" / "reference" / "config.md"
    assert page.read_text(encoding="utf-8") == reference.page(config.option_defaults(), config.option_notes()), (
        "docs/reference/config.md is stale: regenerate it with `PYTHONPATH=src python scripts/config_reference.py`")


def test_the_config_reference_lists_every_setting_of_the_schema():
    text = (ROOT / "docs" / "reference" / "config.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([\w.]+)` \|", text, re.M))
    for group, found in schema.GROUPS.items():
        for model in (found.values() if isinstance(found, dict) else [found]):
            for setting in model.settings.values():
                assert f"{group}.{setting.key}" in listed, f"{group}.{setting.key}"
    assert "seed" in listed


def test_the_config_reference_module_imports_no_torch():
    """So that a command's help can list the settings without waiting for torch."""
    code = "import sys, memsweep.reference; print(sorted(m for m in ('torch', 'matplotlib', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""}).stdout
    assert out.strip() == "[]"


# -- metric keys ------------------------------------------------------------------------------------------------
def listed_keys() -> list[str]:
    """The first column of the metric reference's table of keys: each key, or key pattern, it names."""
    text = (ROOT / "docs" / "reference" / "metrics.md").read_text(encoding="utf-8").split("## Every key", 1)[1]
    rows = [line for line in text.split("\n## ", 1)[0].splitlines() if line.startswith("| `")]
    return [k for row in rows for k in re.findall(r"`([^`]+)`", row.split(" | ", 1)[0])]


def pattern(key: str) -> re.Pattern:
    """A listed key as a regular expression: <space> a feature space's name, <threshold>, <count>, <epsilon> a
    value, a leading ... any key."""
    out = re.escape(key).replace(re.escape("..."), ".+")
    out = out.replace(re.escape("<space>"), "[a-z0-9]+")
    for part in ("<threshold>", "<count>", "<epsilon>"):
        out = out.replace(re.escape(part), "[0-9a-z.e+-]+")
    return re.compile(out)


@pytest.fixture(scope="module")
def written_keys(tmp_path_factory):
    """Every key a run's rows hold after an evaluation with every metric on (pixels, and a TorchScript space) and
    `memsweep eval` of the other thresholds, sample counts, spaces and the probes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("keys")
    net = torch.jit.script(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten()))
    net.save(str(tmp / "pool.pt"))
    cfg = config.compose_run([*FAST, f"paths.output_root={tmp / 'out'}", "eval.copy_features=pixels",
                              "eval.kid_features=pixels", "eval.kid_subsets=4", "eval.kid_subset_size=8",
                              "eval.mifid_features=pixels"])
    store = evaluated_run(cfg, [10])[0]
    for args in (["mem", "--threshold", "0.25", "--num-samples", "40"], ["fd", "--num-samples", "reference"],
                 ["mem", "--features", f"torchscript:pool={tmp / 'pool.pt'}"], ["mifid", "--threshold", "0.2"],
                 ["hybrid", "els", "traj"]):
        assert main(["eval", str(store.dir), *args]) == 0, args
    torch.set_num_threads(threads)
    return set(store.read_metrics()[-1])


def test_every_metric_key_the_reference_lists_is_one_an_evaluation_writes(written_keys):
    keys = listed_keys()
    assert len(keys) > 40 and "mem_ratio" in keys and "field_dist" in keys
    missing = [k for k in keys if not any(pattern(k).fullmatch(w) for w in written_keys)]
    assert not missing, f"docs/reference/metrics.md lists keys no evaluation wrote: {missing} (wrote {sorted(written_keys)})"


def test_every_key_an_evaluation_writes_is_in_the_metric_reference(written_keys):
    patterns = [pattern(k) for k in listed_keys()]
    unlisted = sorted(w for w in written_keys if not any(p.fullmatch(w) for p in patterns))
    assert not unlisted, f"keys docs/reference/metrics.md does not list: {unlisted}"


def grammar() -> list[str]:
    """The first word of each line of the metric reference's grammar block."""
    text = (ROOT / "docs" / "reference" / "metrics.md").read_text(encoding="utf-8").split("## The grammar", 1)[1]
    block = re.search(r"```\n(.*?)```", text, re.S).group(1)
    return [line.split()[0] for line in block.splitlines() if line.strip()]


def grammar_pattern(rule: str) -> re.Pattern:
    """A grammar line as a regular expression: [...] optional, <a|b> one of them, <name> a value, | or."""
    out = ""
    for token in re.findall(r"<[^>]+>|[\[\]|]|[^\[\]|<]+", rule):
        if token.startswith("<"):
            inner = token[1:-1]
            out += f"(?:{inner})" if "|" in inner else "[0-9a-z.e+-]+"
        else:
            out += {"[": "(?:", "]": ")?", "|": "|"}.get(token, re.escape(token))
    return re.compile(out)


def test_every_rule_of_the_key_grammar_names_keys_an_evaluation_writes(written_keys):
    rules = grammar()
    assert len(rules) >= 7
    unused = [r for r in rules if not any(grammar_pattern(r).fullmatch(w) for w in written_keys)]
    assert not unused, f"grammar rules of docs/reference/metrics.md no written key follows: {unused}"


def test_the_wandb_guide_names_the_keys_and_the_x_axis_a_run_logs():
    """What the guide tells a user to pick in wandb's UI is what a run logs: the normalized step as `norm_step`,
    a list as one scalar per entry."""
    logged = []
    logger = WandbLogger.__new__(WandbLogger)   # its run replaced by a recorder: no wandb process
    logger.run, logger.norm = SimpleNamespace(log=logged.append), 2.0
    logger.log({"step": 3, "train_loss_by_t": [1.0, 2.0], "mem_ratio": 0.5})
    (row,) = logged
    guide = (ROOT / "docs" / "guides" / "wandb.md").read_text(encoding="utf-8")
    assert row["norm_step"] == 6.0 and "**`norm_step`**" in guide
    assert row["train_loss_by_t/0"] == 1.0 and "`train_loss_by_t/0`" in guide and "`mem_ratio`" in guide


# -- links and the README -----------------------------------------------------------------------------------------
def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", "")).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_link_leads_to_a_file_and_heading_that_exist(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def commands() -> list[str]:
    """The first command of each fenced code block of the README, as .ci/run and fresh-clone-check read them."""
    blocks = re.findall(r"```[^\n]*\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    return [next(line for line in b.splitlines() if line.strip() and not line.lstrip().startswith("#")) for b in blocks]


def test_the_readme_starts_with_its_two_commands_and_stays_short():
    first, second = commands()[:2]
    assert first == "pip install -e '.[test]' && memsweep sweep demo && memsweep report demo"
    assert second == "pip install -e '.[test]' && python -m pytest -q"
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 300
