"""`memsweep report` logs the report to wandb: read back from the offline run's .wandb file.

wandb 0.31 no longer ships a Python reader of .wandb files (wandb.sdk.internal.datastore is gone; wandb-core,
in Go, reads them), so `records` reads the format itself: the LevelDB log format wandb writes (a 7-byte
header ":W&B", 0xBEE1, version; 32 KiB blocks of chunks, each with a CRC32, a length and a type FULL, FIRST,
MIDDLE or LAST), each record one wandb.proto.wandb_internal_pb2.Record, wandb's own protobuf."""
import json
import struct
from pathlib import Path

import pytest
from wandb.proto import wandb_internal_pb2

from memsweep.cli import main
from test_report import fake_sweep  # noqa: F401  (the fixture)

BLOCK, FULL, FIRST, LAST = 32768, 1, 2, 4


def records(path: Path) -> list:
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending, out = 7, b"", []
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def logged(recs) -> tuple[dict, dict, list]:
    """History items {key: value}, config items {key: value}, and the run records."""
    history, config, runs = {}, {}, []
    for r in recs:
        kind = r.WhichOneof("record_type")
        if kind == "history":
            history.update({it.key or "/".join(it.nested_key): json.loads(it.value_json) for it in r.history.item})
        elif kind == "config":
            config.update({it.key or "/".join(it.nested_key): json.loads(it.value_json) for it in r.config.update})
        elif kind == "run":
            runs.append(r.run)
    return history, config, runs


def test_report_is_logged_offline_with_tables_images_and_line_series(fake_sweep, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("WANDB_MODE", "disabled")  # the flag wins over the environment
    assert main(["report", "fake", "--output-root", str(fake_sweep), "--wandb-mode", "offline"]) == 0
    out = fake_sweep / "sweeps" / "fake"
    assert "wandb (offline): " in capsys.readouterr().out
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    (path,) = run_dir.glob("run-*.wandb")
    history, config, runs = logged(records(path))
    assert runs[0].job_type == "report" and runs[0].run_group == "fake" and runs[0].project == "memsweep"
    files = run_dir / "files"
    # summary.csv, fits.csv and claims.csv as tables
    for key, csv in (("summary", "summary.csv"), ("fits", "fits.csv"), ("claims", "claims.csv")):
        assert history[f"{key}/_type"] == "table-file"
        table = json.loads((files / history[f"{key}/path"]).read_text())
        assert len(table["data"]) == len(Path(out / csv).read_text().strip().splitlines()) - 1
    table = json.loads((files / history["summary/path"]).read_text())
    assert table["columns"][:2] == ["run_id", "state"]
    assert {row[0] for row in table["data"]} >= {"run016abcdef", "run032abcdef", "run064abcdef"}
    # every figure as an image
    pngs = {p.stem for p in out.glob("*.png")}
    images = {k.split("/")[1] for k, v in history.items() if k.endswith("/_type") and v == "image-file"}
    assert pngs and images == pngs
    # the collapse curves as line series: a lineseries panel and its table, one line per run with metrics
    for curve in ("mem_ratio", "rel_gap"):
        panel = config[f"_wandb/visualize/collapse/{curve}"]
        assert panel["panel_config"]["panelDefId"] == "wandb/lineseries/v0"
        assert history[f"collapse/{curve}_table/_type"] == "table-file"
        series = json.loads((files / history[f"collapse/{curve}_table/path"]).read_text())
        assert series["columns"] == ["step", "lineKey", "lineVal"]
        lines = {row[1] for row in series["data"]}
        assert {"n=16 (run016abcdef)", "n=32 (run032abcdef)", "n=64 (run064abcdef)"} <= lines
    # mem_ratio of the n=32 run at its normalized steps (step x n0/n = step / 2)
    points = [(x, y) for x, key, y in json.loads((files / history["collapse/mem_ratio_table/path"]).read_text())["data"]
              if key == "n=32 (run032abcdef)"]
    rows = [json.loads(l) for l in (fake_sweep / "runs" / "run032abcdef" / "metrics.jsonl").read_text().splitlines()]
    assert points == [pytest.approx((r["step"] / 2, r["mem_ratio"])) for r in rows]


def test_report_without_wandb_when_disabled(fake_sweep, capsys):  # noqa: F811
    assert main(["report", "fake", "--output-root", str(fake_sweep), "--wandb-mode", "disabled"]) == 0
    assert not (fake_sweep / "sweeps" / "fake" / "wandb").exists()
    assert "wandb (" not in capsys.readouterr().out
