"""Studies (a sweep file's arms: one-axis sweeps around a shared centre), the paper's claims with computed verdicts,
and the collapse figures: expansion, refusals, and reports of fake studies whose curves follow known laws."""
import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import FAST
from memsweep.cli import main
from memsweep.errors import ConfigError
from memsweep.report import build, claims
from memsweep.science.verdicts import (AGREES, DISAGREES, INCONCLUSIVE, equivalence_verdict, exponent_verdict,
                                       sign_verdict, wilson_interval)
from memsweep.sweeps import spec


def test_verdicts_read_the_interval():
    assert exponent_verdict(0.8, 1.2, 1.0) == AGREES
    assert exponent_verdict(0.3, 0.6, 1.0) == DISAGREES
    assert exponent_verdict(-0.5, 1.5, 1.0) == INCONCLUSIVE          # holds 1 and 0: tells nothing
    assert exponent_verdict(float("nan"), float("nan"), 1.0) == INCONCLUSIVE
    assert sign_verdict(-0.9, -0.1, -1) == AGREES and sign_verdict(0.1, 0.9, -1) == DISAGREES
    assert sign_verdict(-0.1, 0.3, -1) == INCONCLUSIVE
    assert sign_verdict(0.55, 0.9, 1, about=0.5) == AGREES
    assert equivalence_verdict(-0.1, 0.2, 0.25) == AGREES
    assert equivalence_verdict(0.3, 0.6, 0.25) == DISAGREES
    assert equivalence_verdict(0.1, 0.4, 0.25) == INCONCLUSIVE
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and 0.2 < hi < 0.35                             # Wilson: 0.278 at 0 of 10
    lo, hi = wilson_interval(8, 10)
    assert lo < 0.8 < hi and lo == pytest.approx(0.490, abs=1e-3)


def write_study(tmp_path, arms, axes=None, centre=("data.n=16", "train.batch_size=8"), name="study"):
    body = {"overrides": [*FAST, *centre], "arms": arms}
    if axes:
        body["axes"] = axes
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return str(path)


def test_a_study_is_its_arms_around_one_shared_centre(tmp_path, out):
    path = write_study(tmp_path, {"n": {"data.n": [8, 16]}, "batch_size": {"train.batch_size": [4, 8]}},
                       axes={"seed": [0, 1]})
    sw = spec.expand(path)
    assert sw.axes == ["seed", "data.n", "train.batch_size"]
    assert len(sw.runs) == 6 and len({r.run_id for r in sw.runs}) == 6     # 2 seeds x (1 centre + 1 + 1)
    by = {(r.axes["seed"], r.axes["data.n"], r.axes["train.batch_size"]): r for r in sw.runs}
    assert set(by) == {(s, n, b) for s in (0, 1) for n, b in ((8, 8), (16, 8), (16, 4))}
    assert by[(0, 16, 8)].arms == ["n", "batch_size"]                       # the centre is in both arms
    assert by[(0, 8, 8)].arms == ["n"] and by[(1, 16, 4)].arms == ["batch_size"]
    for (s, n, b), r in by.items():
        assert (r.cfg.seed, r.cfg.data.n, r.cfg.train.batch_size) == (s, n, b)
    record = json.loads(spec.record(sw, out).read_text())
    assert record["arms"] == {"n": ["data.n"], "batch_size": ["train.batch_size"]}
    assert {e["run_id"]: e["arms"] for e in record["runs"]}[by[(1, 16, 8)].run_id] == ["n", "batch_size"]


@pytest.mark.parametrize("arms, axes, message", [
    ({"n": {"data.n": [8, 32]}, "b": {"train.batch_size": [4, 8]}}, None,
     r"arms.n.data.n: \[8, 32\] does not hold the centre's value 16"),
    ({"n": {"data.n": [8, 16]}, "b": {"data.n": [16, 32]}}, None, "arms.b.data.n: data.n is varied twice"),
    ({"n": {"data.n": [8, 16]}}, {"data.n": [8]}, "arms.n.data.n: data.n is varied twice"),
    ({"n": [8, 16]}, None, "arms.n must map keys to lists"),
    ({"n": {"data.n": []}}, None, "arms.n.data.n must be a non-empty list"),
    ([8, 16], None, "arms must map an arm's name"),
])
def test_bad_studies_are_named(tmp_path, out, arms, axes, message):
    with pytest.raises(ConfigError, match=message):
        spec.expand(write_study(tmp_path, arms, axes))


def test_an_arm_may_zip_keys_like_a_sweep(tmp_path, out):
    path = write_study(tmp_path, {"n": {"data.n": [8, 16]},
                                  "lr": {"zip": {"optim.lr": [1e-3, 2e-3], "train.steps": [60, 30]}}},
                       centre=("data.n=16", "optim.lr=1e-3"))
    sw = spec.expand(path)
    got = sorted((r.cfg.data.n, r.cfg.optim.lr, r.cfg.train.total_steps, tuple(r.arms)) for r in sw.runs)
    assert got == [(8, 1e-3, 60, ("n",)), (16, 1e-3, 60, ("n", "lr")), (16, 2e-3, 30, ("lr",))]
    assert sw.axes == ["data.n", "optim.lr", "train.steps"]


def test_an_arm_cannot_be_swept_again_on_the_command_line(tmp_path, out):
    path = write_study(tmp_path, {"n": {"data.n": [8, 16]}})
    with pytest.raises(ConfigError, match="data.n is an arm of the study"):
        spec.expand(path, ["data.n=8,32"])
    assert len(spec.expand(path, ["seed=0,1"]).runs) == 4               # other axes cross every arm


# -- a fake study whose curves follow known laws ------------------------------------------------------------
CENTRE = {"data.n": 32, "model.channels": 12, "train.batch_size": 8, "optim.lr": 1e-3}
ARMS = {"n": {"data.n": [16, 32, 64, 128]}, "model_size": {"model.channels": [6, 12, 24]},
        "batch_size": {"train.batch_size": [4, 8, 16]}, "lr": {"optim.lr": [2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3]}}


def params_of(channels):
    return int(95665 * (channels / 12) ** 2)


def laws(p, n_exponent):
    """The onset, the sigmoid width of mem_ratio (1 / rate) and the best SW of a run under the paper's claims:
    onset ∝ n^e / B · lr^-0.5 · params^-0.3 (so the normalized onset grows with lr), the rate falls with n only,
    best fidelity improves with n, params, lr and with smaller B."""
    n, c, b, lr = p["data.n"], p["model.channels"], p["train.batch_size"], p["optim.lr"]
    size = params_of(c) / params_of(12)
    onset = 80.0 * (n / 32) ** n_exponent * (8 / b) * (lr / 1e-3) ** -0.5 * size ** -0.3
    width = 0.15 * (n / 32) ** 0.3
    best = 0.2 * (n / 32) ** -0.2 * (b / 8) ** 0.2 * (lr / 1e-3) ** -0.2 * size ** -0.2
    return onset, width, best


def fake_rows(onset, width, best, rng):
    steps = np.unique(np.geomspace(10, 40000, 60).astype(int))
    ls = np.log(steps / onset)
    test = 1.0 + 0.2 * np.clip(ls, 0, None) + 0.3 * np.clip(-ls / np.log(onset / 5), 0, 1)
    gap = np.where(ls <= 0, 0.0, 0.9 * np.clip(ls / np.log(3), 0, 1))
    train = test * (1 - gap)
    mem = 1 / (1 + np.exp(-(np.log10(steps) - np.log10(4 * onset)) / width))
    sw = best * (1 + 0.5 * np.abs(np.log10(steps / (onset / 2)))) * (1 + rng.normal(0, 0.002, len(steps)))
    return [{"step": int(s), "train_loss": train[i], "test_loss": test[i], "loss_gap": test[i] - train[i],
             "mem_ratio": float(mem[i]), "sw_train": float(sw[i]) * 0.97, "sw_test": float(sw[i])}
            for i, s in enumerate(steps)]


def fake_study(root, n_exponent, seeds=(0, 1)):
    rng = np.random.default_rng(0)
    entries = {}
    for arm, axes in ARMS.items():
        (key, values), = axes.items()
        for v in values:
            for seed in seeds:
                p = {**CENTRE, key: v, "seed": seed}
                run_id = hashlib.sha1(json.dumps(p, sort_keys=True).encode()).hexdigest()[:12]
                if run_id in entries:
                    entries[run_id]["arms"].append(arm)
                    continue
                entries[run_id] = {"run_id": run_id, "axes": p, "arms": [arm]}
                onset, width, best = laws(p, n_exponent)
                d = root / "runs" / run_id
                d.mkdir(parents=True)
                cfg = {"data": {"name": "digits", "n": p["data.n"]}, "model": {"name": "tiny", "channels": p["model.channels"]},
                       "train": {"batch_size": p["train.batch_size"], "total_steps": 40000},
                       "optim": {"lr": p["optim.lr"]}, "seed": seed, "eval": {"sw_features": "pixels"}}
                (d / "config.yaml").write_text(yaml.safe_dump(cfg))
                (d / "status.json").write_text(json.dumps({"state": "finished", "step": 40000, "total_steps": 40000,
                                                           "parameters": params_of(p["model.channels"])}))
                rows = fake_rows(onset * math.exp(rng.normal(0, 0.1)), width, best, rng)   # seeds: 10% apart
                (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "sweeps" / "fake_study").mkdir(parents=True)
    (root / "sweeps" / "fake_study" / "sweep.json").write_text(json.dumps({
        "name": "fake_study", "axes": ["seed", *[k for a in ARMS.values() for k in a]],
        "arms": {arm: list(axes) for arm, axes in ARMS.items()},
        "spec": {"description": "a fake study"}, "runs": list(entries.values())}))


@pytest.mark.parametrize("n_exponent, onset_verdict", [(1.0, AGREES), (0.3, DISAGREES)])
def test_a_study_report_gives_each_claim_its_verdict_on_its_own_arm(tmp_path, n_exponent, onset_verdict):
    root = tmp_path / "outputs"
    fake_study(root, n_exponent)
    path = build.make_report(root, "fake_study", probes=False)
    out = path.parent
    claims = pd.read_csv(out / "claims.csv").set_index(["axis", "claim"])
    verdict = claims["verdict"]
    assert verdict[("n", "onset against n")] == onset_verdict
    assert claims.loc[("n", "onset against n"), "estimate"] == pytest.approx(n_exponent, abs=0.1)
    for axis, claim in [("n", "memorization rate against n"), ("n", "best fidelity against n"),
                        ("params", "onset against model size"), ("params", "best fidelity against model size"),
                        ("batch_size", "raw onset against B"), ("batch_size", "memorization rate against B"),
                        ("batch_size", "best fidelity against B"), ("lr", "normalized onset against lr"),
                        ("lr", "best fidelity against lr")]:
        assert verdict[(axis, claim)] == AGREES, (axis, claim)
    # each arm fitted on its own runs: B's onset exponent is the law's -1, lr's normalized one +0.5
    assert claims.loc[("batch_size", "raw onset against B"), "estimate"] == pytest.approx(-1, abs=0.1)
    assert claims.loc[("lr", "normalized onset against lr"), "estimate"] == pytest.approx(0.5, abs=0.1)
    assert claims.loc[("params", "onset against model size"), "estimate"] == pytest.approx(-0.3, abs=0.1)
    # train and test SW differ by 3% everywhere: nearly equal
    assert verdict[("any", "train and test SW nearly equal")] == AGREES
    fits = pd.read_csv(out / "fits.csv")
    assert set(fits["axis"]) == {"n", "model.channels", "batch_size", "lr"}
    assert (fits.loc[fits.axis == "model.channels", "x"] == "params").all()   # a width sweep is a size sweep
    tau = fits[fits.metric == "tau_mem"]
    assert tau["n_values"].tolist() == [4, 3, 3, 5] and tau["n_points"].tolist() == [8, 6, 6, 10]   # 2 seeds each

    text = path.read_text()
    assert "## The paper's claims, with verdicts" in text and "| n | onset against n |" in text
    assert "The study varied one axis at a time around its centre" in text
    assert "Caution" not in text                                  # B <= n/2 everywhere
    # a claim about one axis is never quoted for another: Bonnaire's window is about n
    against = text.split("**Against ")
    for block in against[1:]:
        if not block.startswith("n (training images)"):
            assert "Bonnaire" not in block, block[:60]
    for name in ("collapse_n.png", "collapse_batch_size.png", "collapse_lr.png", "collapse_model_channels.png"):
        assert (out / name).is_file() and f"]({name})" in text
    collapse = text.split("## Collapse in normalized time")[1].split("##")[0]
    assert "batch size B: tau_mem spans" in collapse and "learning rate: tau_mem spans" in collapse
    lines = {line.split(":")[0]: line for line in collapse.splitlines() if line.startswith("- ")}
    assert "does not collapse" in lines["- learning rate"] and ": collapses" in lines["- batch size B"]
    assert ("collapses" in lines["- n (training images)"]) == (n_exponent == 1.0)   # 0.3: 16^0.7 apart


def test_status_shows_every_run_of_a_study(tmp_path, out, capsys):
    path = write_study(tmp_path, {"n": {"data.n": [8, 16]}, "batch_size": {"train.batch_size": [4, 8]}})
    assert main(["sweep", path, "--dry-run"]) == 0
    capsys.readouterr()
    assert main(["sweep", path, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["status", "study"]) == 0
    text = capsys.readouterr().out
    assert "3 finished" in text and text.count("finished │") == 3
    path = build.make_report(out, "study", probes=False)
    claims = pd.read_csv(path.parent / "claims.csv")
    assert set(claims["axis"]) <= {"n", "batch_size", "any"}
    assert "(arm n)" in path.read_text() and "(arm batch_size)" in path.read_text()


def test_batches_over_half_the_training_set_are_flagged():
    summary = pd.DataFrame({"run_id": ["a", "b", "c"], "n": [34, 34, 64], "batch_size": [16, 64, 32]})
    assert claims.large_batches(summary)["run_id"].tolist() == ["b"]
    table = pd.DataFrame([{"axis": "batch_size", "claim": "raw onset against B", "paper": "", "measured": "",
                           "verdict": INCONCLUSIVE}])
    text = "\n".join(claims.section(table, summary))
    assert "Caution: 1 run(s) have a batch over half their training set (`b`: n = 34, B = 64)" in text
