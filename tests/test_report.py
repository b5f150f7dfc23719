"""memsweep.report: a report from a fake sweep written in the run store's formats, and from a real tiny sweep."""
import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from conftest import FAST  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from memsweep.report.summary import SUMMARY_COLUMNS
from memsweep.report.markdown import fmt  # noqa: E402
from memsweep.report import build, curves, document, figure_cache, probe_report, sample_analyses, style  # noqa: E402
from memsweep.science.capacity import effective_memorization  # noqa: E402
from memsweep.data import datasets  # noqa: E402
from memsweep.store.run import RunStore  # noqa: E402
from memsweep.cli import main  # noqa: E402
from memsweep.store import identity  # noqa: E402
from memsweep import config  # noqa: E402
from memsweep.train.loop import train  # noqa: E402

FIGURES = ["curves_n_step.png", "curves_n_normalized.png", "scaling_n.png", "window_n.png", "rate_fidelity_n.png",
           "samples_n.png", "gap_by_t_n.png", "gap_by_t_n_normalized.png", "gap_by_t_sweep.png", "novelty_n.png",
           "nn_ratio_n.png", "copies_n.png"]
DIGITS = {"name": "digits", "offset": 0, "test_size": 500, "image_size": 8, "channels": 1, "num_classes": 10,
          "root": None, "download": False}
NUM_SAMPLES = 40


def write_grid(path, rng, k=4):
    """A sample grid like memsweep's: k generated 8x8 images above their k nearest training images."""
    tiles = rng.random((2, k, 8, 8))
    grid = np.ones((2 * 10, k * 10))
    for r in range(2):
        for c in range(k):
            grid[r * 10 + 1:r * 10 + 9, c * 10 + 1:c * 10 + 9] = tiles[r, c]
    plt.imsave(path, np.kron(grid, np.ones((4, 4))), cmap="gray", vmin=0, vmax=1)


def synthetic_rows(n, steps, rng):
    """Curves whose onset is proportional to n: tau_mem = c * n, so the fitted exponent is 1."""
    onset = 10.0 * n
    ls = np.log(steps / onset)
    gap = np.where(ls <= 0, 0.0, 0.9 * np.clip(ls / np.log(3), 0, 1)) + rng.normal(0, 0.01, len(steps))
    test = 1.0 + 0.2 * np.clip(ls, 0, None) + 0.3 * np.clip(-ls / np.log(onset / 20), 0, 1)  # falls, then rises
    train = test * (1 - gap)
    mem = 1 / (1 + np.exp(-(np.log10(steps) - np.log10(4 * onset)) / 0.15))
    sw = 0.15 + 0.05 * np.abs(np.log10(steps / (2 * onset)))
    if n == 32:   # double descent: dips at steps 100 and 2000
        well = lambda at, depth: 1 - depth * np.exp(-0.5 * ((np.log10(steps) - np.log10(at)) / 0.2) ** 2)  # noqa: E731
        sw = 0.2 * well(100, 0.5) * well(2000, 0.4)
    rows = []
    for i, s in enumerate(steps):
        by_t = np.linspace(0.5, 1.5, 10)
        rows.append({"step": int(s), "train_loss": train[i], "test_loss": test[i], "loss_gap": test[i] - train[i],
                     "train_loss_by_t": list(by_t * train[i]), "test_loss_by_t": list(by_t * test[i]),
                     "mem_ratio": float(mem[i]), "nn_dist": 3.0 * (1 - mem[i]), "sw_train": sw[i] * 0.95,
                     "sw_test": sw[i], "field_dist": 0.8 - 0.6 * float(mem[i])})
    return rows


def write_samples(store, n, rows, rng):
    """Saved samples like an evaluation's: a fraction mem_ratio of them copies of training image i % n
    (to within 1/255), the rest uniform noise images (far from every digit)."""

    d = datasets.load(OmegaConf.create({**DIGITS, "n": n}))
    idx = torch.arange(NUM_SAMPLES) % n
    for r in rows:
        k = round(r["mem_ratio"] * NUM_SAMPLES)
        x = torch.as_tensor(rng.uniform(-1, 1, (NUM_SAMPLES, 1, 8, 8)), dtype=torch.float32)
        x[:k] = d.train_x[idx[:k]]
        store.save_samples(r["step"], x, d.train_y[idx])


def write_run(root, run_id, n, rows, status, rng):
    d = root / "runs" / run_id
    (d / "samples").mkdir(parents=True)
    write_samples(RunStore(d), n, rows, rng)
    cfg = {"data": {**DIGITS, "n": n}, "model": {"name": "tiny"},
           "train": {"batch_size": 32, "total_steps": 3000}, "optim": {"lr": 1e-3}, "seed": 0,
           "eval": {"sw_features": "pixels", "fid_features": "pixels", "mem_threshold": 1 / 3}}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "status.json").write_text(json.dumps({"total_steps": 3000, "parameters": 95665, **status}))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for r in rows[:: max(1, len(rows) // 3)] + rows[-1:]:
        write_grid(d / "samples" / f"step_{r['step']:09d}.png", rng)


@pytest.fixture
def fake_sweep(tmp_path):
    """Three finished runs (n = 16, 32, 64), one diverged after 2 evaluations (n = 128), one never started."""
    root = tmp_path / "outputs"
    rng = np.random.default_rng(0)
    steps = np.unique(np.geomspace(20, 3000, 16).astype(int))
    entries = []
    for n in (16, 32, 64):
        run_id = f"run{n:03d}abcdef"[:12]
        write_run(root, run_id, n, synthetic_rows(n, steps, rng), {"state": "finished", "step": 3000}, rng)
        entries.append({"run_id": run_id, "axes": {"data.n": n}})
    rows = synthetic_rows(128, steps, rng)[:2]
    rows[-1]["train_loss"] = float("nan")
    write_run(root, "diverged0128", 128, rows, {"state": "diverged", "step": 30, "diverged_step": 30}, rng)
    entries.append({"run_id": "diverged0128", "axes": {"data.n": 128}})
    entries.append({"run_id": "pending00256", "axes": {"data.n": 256}})
    (root / "sweeps" / "fake").mkdir(parents=True)
    (root / "sweeps" / "fake" / "sweep.json").write_text(json.dumps(
        {"name": "fake", "axes": ["data.n"], "spec": {"description": "a fake sweep over n"}, "runs": entries}))
    return root


def test_report_from_a_fake_sweep(fake_sweep, monkeypatch, capsys):
    monkeypatch.setenv("MEMSWEEP_OUTPUT_ROOT", str(fake_sweep))     # the report's default output root
    assert main(["report", "fake"]) == 0
    out = fake_sweep / "sweeps" / "fake"
    path = out / "report.md"
    assert capsys.readouterr().out.strip() == f"report: {path}"
    for name in ["summary.csv", "fits.csv", "report.md", *FIGURES]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name

    summary = pd.read_csv(out / "summary.csv")
    assert set(SUMMARY_COLUMNS) <= set(summary.columns)
    assert len(summary) == 5 and summary["run_id"].is_unique
    s = summary.set_index("run_id")
    assert s.loc["diverged0128", "state"] == "diverged" and s.loc["pending00256", "state"] == "pending"
    assert math.isnan(s.loc["diverged0128", "tau_mem"])
    assert s.loc["run016abcdef", "tau_mem"] < s.loc["run032abcdef", "tau_mem"] < s.loc["run064abcdef", "tau_mem"]

    fits = pd.read_csv(out / "fits.csv")
    tau = fits[(fits.axis == "n") & (fits.metric == "tau_mem")].iloc[0]
    assert tau["n_points"] == 3 and tau["n_missing"] == 2
    assert tau["exponent_lo"] < tau["exponent"] < tau["exponent_hi"] and abs(tau["exponent"] - 1) < 0.1
    gap = fits[(fits.axis == "n") & (fits.metric == "tau_gap")].iloc[0]
    assert abs(gap["exponent"] - 1) < 0.1
    # sw_test is a V in log step with its bottom at 2 onsets (n = 32: double descent instead): tau_gen ∝ n
    assert s.loc["run064abcdef", "tau_gen"] / s.loc["run016abcdef", "tau_gen"] == pytest.approx(4, rel=0.15)
    assert (fits.metric == "tau_gen").any()
    assert set(fits["metric"]) >= {f"tau_t{k}" for k in range(10)}     # the onset per noise level
    rate = fits[(fits.axis == "n") & (fits.metric == "mem_rate")].iloc[0]
    assert rate["n_runs"] == 3                                 # not the diverged run's

    text = path.read_text()
    assert f"tau_mem (the test-loss turning point, the primary onset) grows as n^a with a = {tau['exponent']:.2f} " \
           f"[{tau['exponent_lo']:.2f}, {tau['exponent_hi']:.2f}]" in text
    assert "The generalization window, tau_gen → tau_mem" in text and "The onset per noise level" in text
    assert "exponent 1" in text                                # compared with the paper's linear claim
    assert "diverged0128" in text and "**diverged**" in text and "diverged (non-finite loss) at step 30" in text
    assert "pending00256" in text and "**pending**" in text
    for fig in FIGURES:
        assert f"]({fig})" in text
    assert "could not be drawn" not in text
    assert "| run_id | state | n |" in text                    # the summary as a markdown table

    # beyond the paper: double descent, novelty and copies from the saved samples, EMM
    assert s.loc["run032abcdef", "sw_test_dips"] == 2 and s.loc["run016abcdef", "sw_test_dips"] == 1
    assert abs(math.log10(s.loc["run032abcdef", "sw_test_dip1_step"]) - 2) < 0.15
    assert abs(math.log10(s.loc["run032abcdef", "sw_test_dip2_step"]) - math.log10(2000)) < 0.15
    assert "run032abcdef` (n=32): sw_test: first dip" in text
    assert s.loc["run016abcdef", "final_field_dist"] == pytest.approx(0.8 - 0.6 * s.loc["run016abcdef", "final_mem_ratio"])
    nov = pd.read_csv(out / "novelty.csv")
    for rid in ("run016abcdef", "run032abcdef", "run064abcdef"):
        mine = nov[nov.run_id == rid]
        logged = s.loc[rid, "final_mem_ratio"]
        assert mine["mem_ratio_saved"].iloc[-1] == pytest.approx(round(logged * NUM_SAMPLES) / NUM_SAMPLES)
        # copies are inauthentic and inside the training manifold; the noise images are neither
        assert s.loc[rid, "final_authenticity"] == pytest.approx(1 - mine["mem_ratio_saved"].iloc[-1])
    assert s.loc["run016abcdef", "final_precision_train"] == 1.0 and s.loc["run064abcdef", "final_precision_train"] < 1
    img = pd.read_csv(out / "copies_by_image.csv")
    last16 = img[img.run_id == "run016abcdef"]
    k = round(s.loc["run016abcdef", "final_mem_ratio"] * NUM_SAMPLES)
    assert last16["copies"].sum() == k and (last16["copies"] == np.bincount(np.arange(k) % 16, minlength=16)).all()
    per_run = pd.read_csv(out / "copies_by_class.csv").groupby("run_id")["train_images"].sum()
    assert per_run[["run016abcdef", "run032abcdef", "run064abcdef"]].tolist() == [16, 32, 64]
    emm = effective_memorization(s.loc[["run016abcdef", "run032abcdef", "run064abcdef"], "n"],
                                 s.loc[["run016abcdef", "run032abcdef", "run064abcdef"], "final_mem_ratio"])
    assert emm["n_below"] == 32 and emm["n_above"] == 64
    assert f"**EMM ≈ {fmt(emm['emm'])}** (between n = 32 and n = 64; 3 runs)" in text
    for section in ("### Field-level memorization", "### Novelty beside fidelity", "### Which samples are memorized",
                    "Do outliers go first?"):
        assert section in text


@pytest.mark.slow
def test_a_second_report_keeps_the_figures_whose_inputs_are_unchanged(fake_sweep):
    out = fake_sweep / "sweeps" / "fake"
    build.make_report(fake_sweep, "fake")
    drawn = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert set(FIGURES) <= set(drawn)
    text = (out / "report.md").read_text()
    build.make_report(fake_sweep, "fake")
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == drawn     # nothing drawn again
    same = lambda t: [x for x in t.splitlines() if not x.startswith("_Generated")]  # noqa: E731
    assert same((out / "report.md").read_text()) == same(text)

    # a run gains an evaluation: the figures of its curves are drawn again, the sweep-wide others too
    # (the summary changed); a deleted figure is drawn again; a figure no report draws any more is removed
    metrics = fake_sweep / "runs" / "run016abcdef" / "metrics.jsonl"
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    metrics.write_text(metrics.read_text() + json.dumps({**rows[-1], "step": 6000}) + "\n")
    (out / "copies_n.png").unlink()
    (out / "curves_lr_step.png").write_bytes(b"an earlier report's figure")
    build.make_report(fake_sweep, "fake")
    now = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert set(now) == set(drawn)
    assert now["curves_n_step.png"] != drawn["curves_n_step.png"] and now["scaling_n.png"] != drawn["scaling_n.png"]
    assert (out / "copies_n.png").stat().st_size > 0

    # the figure code's fingerprint: equal inputs give one key, another run's values another, and an
    # argument of no known kind none (drawn every time)
    _, runs = build.load_sweep(fake_sweep, "fake")
    func = curves.curves_figure
    assert figure_cache.key(func, (runs, 1), {}) == figure_cache.key(func, (build.load_sweep(fake_sweep, "fake")[1], 1), {})
    assert figure_cache.key(func, (runs, 1), {}) != figure_cache.key(func, (runs[1:], 1), {})
    assert figure_cache.key(func, (object(),), {}) is None


def test_a_figure_laid_out_once_has_savefigs_pixels(tmp_path):
    """style.save computes a constrained layout once and switches the engine off before savefig (which
    would lay the figure out again in a draw of its own): the same image, with the tight bbox too."""
    def figure():
        fig, axes = plt.subplots(2, 3, figsize=(9, 5), layout="constrained")
        for i, ax in enumerate(axes.flat):
            ax.plot(np.geomspace(10, 1e5, 30), np.linspace(0, 1, 30) ** (i + 1), label=f"curve {i}")
            ax.set_xscale("log")
            style.plain_log_ticks(ax.xaxis)
            ax.set_ylabel(f"a long label number {i}")
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right center", title="runs")
        fig.suptitle("a title")
        return fig
    for extra in ({}, {"bbox_inches": "tight"}):
        fig = figure()
        fig.savefig(tmp_path / "plain.png", dpi=style.DPI, **extra)
        plt.close(fig)
        fig = figure()
        assert style.save(fig, tmp_path / "once.png", **extra) == tmp_path / "once.png"
        assert fig.get_layout_engine() is None and not plt.fignum_exists(fig.number)
        plain, once = (np.asarray(matplotlib.image.imread(tmp_path / f)) for f in ("plain.png", "once.png"))
        assert plain.shape == once.shape and np.array_equal(plain, once), extra


def test_a_report_whose_runs_did_not_memorize_says_so_first_and_claims_no_interval_from_two_points(tmp_path):
    """Onsets (10 n steps) beyond the 3,000 steps trained: no run's test loss turns up. Two values of n: every fit
    has 2 points, no degree of freedom for an interval."""
    root = tmp_path / "outputs"
    rng = np.random.default_rng(0)
    steps = np.unique(np.geomspace(20, 3000, 16).astype(int))
    entries = []
    for n in (600, 1200):
        run_id = f"short{n:07d}"
        write_run(root, run_id, n, synthetic_rows(n, steps, rng), {"state": "finished", "step": 3000}, rng)
        entries.append({"run_id": run_id, "axes": {"data.n": n}})
    (root / "sweeps" / "short").mkdir(parents=True)
    (root / "sweeps" / "short" / "sweep.json").write_text(json.dumps({"name": "short", "axes": ["data.n"],
                                                                     "runs": entries}))
    text = build.make_report(root, "short", probes=False).read_text()
    summary = pd.read_csv(root / "sweeps" / "short" / "summary.csv")
    assert summary["tau_mem"].isna().all()
    title, blank, notice = text.splitlines()[:3]
    assert title.startswith("# Sweep `short`") and blank == ""
    assert notice.startswith("**No run memorized within its training:** none of the 2 run(s) with evaluations")
    assert "Train longer (`train.steps` or `train.epochs`) or use a smaller n (`data.n`)." in notice
    # best_sw has a value at both n: a power law through 2 points, said without an interval
    best = pd.read_csv(root / "sweeps" / "short" / "fits.csv").set_index("metric").loc["best_sw"]
    assert best["n_points"] == 2 and np.isfinite(best["exponent"]) and np.isnan(best["exponent_lo"])
    assert "(no interval: 2 points), too few points to tell." in text
    assert "no CI" not in text and "(no interval: 2 points), which does not show it" not in text
    # one run that memorized is enough for the sentence to go
    summary.loc[0, "tau_mem"] = 1000.0
    assert document.no_memorization(summary) == []


def test_the_els_sentence_names_only_the_n_it_has():
    """Every n closer to the memorizer's samples than to the ELS machine's: no empty list printed as `n = none`."""
    els = pd.DataFrame([{"run_id": f"r{n}", "n": n, "seed": 0, "when": "late", "step": 60, "mem_ratio": 0.0,
                         "variant": "padded", "els_dist": 6.0, "els_mem_dist": 4.0, "els_mem_ratio": 0.0,
                         "els_patch": "5"} for n in (8, 16)])
    text = "\n".join(probe_report.els_section({"els": els}))
    assert "closer to the memorizer's than to the ELS machine's at every n (8, 16)" in text
    assert "none" not in text


def test_missing_sweep_is_a_one_line_config_error(fake_sweep, capsys):
    assert main(["report", "nope", "--output-root", str(fake_sweep)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("memsweep: error: sweep nope: no such sweep under") and "\n" not in err


@pytest.mark.slow
def test_report_from_a_real_tiny_sweep(out):
    entries = []
    for n, offset in ((8, 0), (16, 0), (32, 0), (8, 640)):    # and n = 8 on a disjoint subset
        cfg = config.compose_run([*FAST, f"data.n={n}", f"data.offset={offset}"])
        assert identity.output_root(cfg) == out.resolve()
        assert train(cfg)["state"] == "finished"
        entries.append({"run_id": identity.run_id(cfg), "axes": {"data.n": n, "data.offset": offset}})
    (out / "sweeps" / "real").mkdir(parents=True)
    (out / "sweeps" / "real" / "sweep.json").write_text(json.dumps({"name": "real", "axes": ["data.n", "data.offset"],
                                                                    "runs": entries}))
    assert main(["report", "real", "--output-root", str(out)]) == 0
    d = out / "sweeps" / "real"
    path = d / "report.md"
    summary = pd.read_csv(d / "summary.csv")
    assert len(summary) == 4 and (summary["state"] == "finished").all()
    assert (summary["final_step"] == 60).all() and (summary["n_evals"] == 4).all()
    for name in ["fits.csv", "curves_n_step.png", "curves_n_normalized.png", "samples_n.png", "gap_by_t_n.png",
                 "novelty_n.png", "nn_ratio_n.png", "disjoint.png", "disjoint.csv", "novelty.csv",
                 "hybrid.png", "els.png", "traj.png", "hybrid.csv", "els.csv", "traj.csv"]:   # issue 16's probes
        assert (d / name).is_file(), name
    text = path.read_text()
    assert "could not be drawn" not in text and "## Summary" in text and "tau_mem" in text
    assert summary["final_field_dist"].between(0, 10).all()                  # logged by every evaluation
    pairs = pd.read_csv(d / "disjoint.csv")                                   # the n = 8 pair, and only it
    assert len(pairs) == 1 and pairs.loc[0, "n"] == 8 and not pairs.loc[0, "overlap"]
    assert {pairs.loc[0, "offset_a"], pairs.loc[0, "offset_b"]} == {0, 640}
    assert 0 < pairs.loc[0, "pair_dist"] and 0 <= pairs.loc[0, "same_fraction"] <= 1
    assert "### Disjoint-subsets test" in text
    # a second report reads the stored sample analyses: nothing computed, the same numbers
    # (the probes' CPU seconds too: the second report reads them from the analysis cache with the probes)
    outputs = lambda: {n: [x for x in (d / n).read_text().splitlines() if not x.startswith("_Generated")]  # noqa: E731
                       for n in ("novelty.csv", "copies_by_image.csv", "copies_by_class.csv", "summary.csv",
                                 "report.md")}
    first = outputs()
    computed = sample_analyses.COMPUTED.copy()
    build.make_report(out, "real")
    assert sample_analyses.COMPUTED == computed and outputs() == first
