"""report.html from synthetic run directories (and from a copy of the real
results/latest/results.json when there is one): well-formed, self-contained,
one matrix entry per call coloured by its verdict, one embedded plot per call
with a timeline, links that resolve, missing fields shown as not recorded."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from harness import paths
from harness.measure.record import CallRecord, Direction
from harness.report.html import ReportError, load_run, record_from_dict, write_report
from harness.report.plots import timeline_png
from harness.report.results import format_table, tally

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- synthetic runs

def timeline(seconds: int, lossy: range = range(0), mos: float | None = 4.3,
             rate: int = 50) -> list[dict[str, Any]]:
    samples = []
    for t in range(seconds):
        lost = rate // 2 if t in lossy else 0
        samples.append({"t": float(t), "sent": rate, "received": rate - lost, "lost": lost,
                        "jitter_ms": 8.0 if t in lossy else 1.5 + (t % 3) * 0.2,
                        "bitrate_kbps": 100.0 if t not in lossy else 50.0,
                        "mos": (2.1 if t in lossy else mos) if mos is not None else None})
    return samples


DEFAULT_EXPECTATION = {"outcome": "connects", "min_mos": 4.0}


def make_record(policy: str, strategy: str, *, outcome: str = "connects",
                verdict: str = "pass", expected: dict[str, Any] | None = DEFAULT_EXPECTATION,
                mos: float | None = 4.38, **extra: Any) -> dict[str, Any]:
    """A call record as results.json holds it (CallRecord.to_dict()), plus `extra`."""
    connected = outcome != "fails"
    direction = {"packets_received": 305 if connected else None,
                 "packets_lost": 0 if connected else None,
                 "loss_pct": 0.0 if connected else None, "jitter_ms": 1.6 if connected else None,
                 "bitrate_kbps": 100.1 if connected else None, "mos": mos,
                 "r_factor": 91.8 if mos else None}
    record: dict[str, Any] = {
        "topology": "ru-to-abroad", "policy": policy, "strategy": strategy,
        "connected": connected, "setup_s": 0.81 if connected else None,
        "loss_pct": 0.0 if connected else None, "jitter_ms": 1.6 if connected else None,
        "rtt_ms": 3.1 if connected else None, "mos": mos,
        "expected": expected,
        "verdict": verdict, "outcome": outcome,
        "packets_sent": 305, "packets_received": 610 if connected else 0,
        "packets_lost": 0 if connected else None, "bitrate_kbps": 100.1 if connected else None,
        "selected_pair": {"local_type": "host", "local_protocol": "udp",
                          "local_address": "100.64.1.2:46958", "remote_type": "srflx",
                          "remote_protocol": "udp", "remote_address": "198.18.4.2:57514",
                          "local_relay_protocol": None} if connected else None,
        "error": None if connected else "ice-failed",
        "directions": [dict(direction, receiver="caller"), dict(direction, receiver="callee")],
        "run_id": "cwtest01", "call_id": f"{policy}--{strategy}", "finished_at": 1795893406.5,
    }
    record.update(extra)
    return record


def call_files(policy: str, strategy: str, pcap: bool = True) -> dict[str, Any]:
    base = f"calls/{policy}--{strategy}"
    return {"received_wav": f"{base}/callee-received.wav",
            "pcap": f"{base}/capture.pcap" if pcap else None}


def synthetic_records() -> list[dict[str, Any]]:
    """Passing, failing and unexpected calls; optional fields full, null and absent."""
    return [
        # Everything recorded, a clean call.
        make_record(
            "baseline", "direct",
            timeline=timeline(12), timeline_reverse=timeline(12, mos=4.4),
            events=[{"t": 0.8, "kind": "connected", "detail": "host/udp -> srflx"}],
            pesq={"mos_lqo": 4.12, "status": "ok"}, files=call_files("baseline", "direct"),
            censor_counters=[{"rule": "accept-established", "packets": 1210, "bytes": 190000}],
            failure_kind=None, failed_at_s=None),
        # Expected to fail and failed: no timeline, a failure time, a WAV that isn't there.
        make_record(
            "dpi-stun-drop", "direct", outcome="fails", mos=None,
            expected={"outcome": "fails"}, timeline=None, timeline_reverse=None,
            events=[{"t": 10.2, "kind": "failed", "detail": "ice-failed"}], pesq=None,
            files={"received_wav": "calls/dpi-stun-drop--direct/callee-received.wav",
                   "pcap": None},
            censor_counters=[{"rule": "drop-stun", "packets": 37, "bytes": 4100}],
            failure_kind="ice-failed", failed_at_s=10.2),
        # Not as expected: degraded mid-call by a policy swap; a few junk samples.
        make_record(
            "udp-throttle", "turn-udp", outcome="degraded", verdict="fail", mos=2.1,
            timeline=[*timeline(15, lossy=range(5, 10)), "junk", {"t": None}, {"sent": 3}],
            events=[{"t": 0.7, "kind": "connected", "detail": "relay/udp"},
                    {"t": 5.0, "kind": "policy-swap", "detail": "udp-throttle"},
                    {"t": 9.1, "kind": "ice-restart", "detail": ""},
                    {"t": 9.5, "kind": "path-change", "detail": "relay/tcp"},
                    {"t": 9.6, "kind": "fault", "detail": "<script>alert(1)</script>"}],
            pesq={"mos_lqo": None, "status": "skipped: no reference"},
            files=call_files("udp-throttle", "turn-udp"), censor_counters=[],
            failure_kind=None, failed_at_s=None,
            faults=[{"fault": {"kind": "policy-swap"}, "kind": "policy-swap", "performed": True,
                     "started_s": 5.0, "done_s": 5.02, "ended_s": None, "detail": "swapped",
                     "error": None}]),
        # An old-style record: none of the optional fields; its files are discovered.
        make_record("relay-block", "turn-tls-443"),
        # Every optional field present but null; figures missing too.
        make_record(
            "relay-block", "direct", mos=None, setup_s=None, selected_pair=None, directions=[],
            verdict="fail", timeline=None, timeline_reverse=None, events=None, pesq=None,
            files=None, censor_counters=None, failure_kind=None, failed_at_s=None),
        # No expectation; named files outside the run directory must not be linked.
        make_record(
            "baseline", "turn-udp", expected=None, verdict="no-expectation",
            timeline=[], events=[], files={"received_wav": "../outside.wav",
                                           "pcap": "/etc/passwd"}),
    ]


ENVIRONMENT = {
    "kernel": "6.1.0-test", "versions": {"python": "3.11.2", "aiortc": "1.9.0"},
    "backends": {"lab": "mininet", "censor": "nftables"},
    "capabilities": [{"name": "root", "status": "ok", "detail": ""},
                     {"name": "tcpdump", "status": "missing", "detail": "Debian package tcpdump"}],
}


def build_run(root: Path, records: list[dict[str, Any]] | None = None,
              environment: dict[str, Any] | None = None, name: str = "run1") -> Path:
    """A run directory as `make scenarios` leaves it: results.json, junit.xml and,
    per call, calls/<policy>--<strategy>/ with its JSON, logs and recordings."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    records = synthetic_records() if records is None else records
    meta: dict[str, Any] = {"schema": 1, "run_id": f"cw{name}", "kind": "scenarios",
                            "topology": "ru-to-abroad", "started": 1795893390.9,
                            "finished": 1795893442.8, "host": "vm", "kernel": "6.1.0-test"}
    if environment is not None:
        meta["environment"] = environment
    (run_dir / "results.json").write_text(json.dumps({**meta, "calls": records}, indent=2))
    (run_dir / "junit.xml").write_text("<testsuites/>\n")
    (root / "outside.wav").write_bytes(b"RIFF")
    for record in records:
        call_dir = run_dir / "calls" / f"{record['policy']}--{record['strategy']}"
        call_dir.mkdir(parents=True, exist_ok=True)
        for name_ in ("caller.json", "callee.json", "record.json"):
            (call_dir / name_).write_text("{}\n")
        for name_ in ("caller.log", "callee.log"):
            (call_dir / name_).write_text("")
        if record["connected"]:
            for name_ in ("caller-received.wav", "callee-received.wav"):
                (call_dir / name_).write_bytes(b"RIFF\x24\x00\x00\x00WAVE")
        files = record.get("files")
        if not isinstance(files, dict):
            files = {}
        if isinstance(files.get("pcap"), str) and not files["pcap"].startswith(("/", "..")):
            (run_dir / files["pcap"]).write_bytes(b"\xd4\xc3\xb2\xa1")
    return run_dir


# ---------------------------------------------------------------- reading the page back

class Page(HTMLParser):
    """The bits of the page the tests look at, and whether its tags nest."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()
        if self.stack:
            self.errors.append(f"unclosed: {self.stack}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.elements.append((tag, values))
        if "id" in values:
            self.ids.append(values["id"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, css: str | None = None) -> list[dict[str, str]]:
        return [attrs for t, attrs in self.elements
                if t == tag and (css is None or css in attrs.get("class", "").split())]


def read_page(path: Path) -> tuple[str, Page]:
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    assert page.errors == []
    return text, page


def section(text: str, anchor: str) -> str:
    match = re.search(rf'<section class="call [a-z]+" id="{re.escape(anchor)}">(.*?)</section>',
                      text, re.S)
    assert match, anchor
    return match.group(1)


def check_self_contained(text: str, page: Page, run_dir: Path) -> None:
    """No web reference, every link and source a file of the run or an anchor."""
    assert not re.search(r"https?://", text, re.I)
    assert "<link" not in text and "<script" not in text and "@import" not in text
    ids = set(page.ids)
    assert len(ids) == len(page.ids), "duplicate ids"
    for tag, attrs in page.elements:
        for attr in ("href", "src"):
            target = attrs.get(attr)
            if target is None:
                continue
            if target.startswith("#"):
                assert target[1:] in ids, target
            elif target.startswith("data:"):
                assert tag == "img" and target.startswith("data:image/png;base64,")
            else:
                assert ":" not in target and not target.startswith("/"), target
                resolved = (run_dir / unquote(target)).resolve()
                assert resolved.is_relative_to(run_dir.resolve()), target
                assert resolved.is_file(), target


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_MAGIC)
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# ---------------------------------------------------------------- the report

@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return build_run(tmp_path, environment=ENVIRONMENT)


def test_report_is_well_formed_and_self_contained(run_dir: Path) -> None:
    path = write_report(run_dir)
    assert path == run_dir.resolve() / "report.html"
    text, page = read_page(path)
    check_self_contained(text, page, run_dir)
    assert text.startswith("<!DOCTYPE html>")
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_matrix_has_one_entry_per_call_coloured_by_verdict(run_dir: Path) -> None:
    text, page = read_page(write_report(run_dir))
    records = synthetic_records()
    entries = page.find("a", "entry")
    assert len(entries) == len(records)
    expected = {f"call-{r['policy']}--{r['strategy']}":
                {"pass": "pass", "fail": "fail"}.get(r["verdict"], "noexp") for r in records}
    got = {e["data-call"]: (set(e["class"].split()) & {"pass", "fail", "noexp"}).pop()
           for e in entries}
    assert got == expected
    # Rows are policies, columns the strategies run; pairs that weren't run are marked.
    cells = page.find("td", "cell")
    assert len(cells) == 4 * 3  # 4 policies × 3 strategies
    assert len(page.find("td", "notrun")) == 12 - len(records)
    by_class = [(set(c["class"].split()) - {"cell"}).pop() for c in cells]
    assert sorted(by_class) == ["fail"] * 2 + ["noexp"] + ["notrun"] * 6 + ["pass"] * 3
    header = re.search(r'<table class="matrix"><thead><tr>(.*?)</tr>', text, re.S)
    assert header and re.findall(r"<br>([^<]*)</th>", header.group(1)) == [
        "direct", "turn-udp", "turn-tls-443"]


def test_one_plot_per_call_with_a_timeline(run_dir: Path) -> None:
    text, page = read_page(write_report(run_dir))
    images = [i for i in page.find("img") if i["src"].startswith("data:image/png;base64,")]
    assert len(images) == 2  # baseline--direct and udp-throttle--turn-udp
    for image in images:
        data = base64.b64decode(image["src"].split(",", 1)[1], validate=True)
        width, height = png_size(data)
        assert 600 <= width <= 1000 and 200 <= height <= 400
    for anchor in ("call-baseline--direct", "call-udp-throttle--turn-udp"):
        assert "data:image/png;base64," in section(text, anchor)
    for anchor in ("call-dpi-stun-drop--direct", "call-relay-block--turn-tls-443",
                   "call-relay-block--direct", "call-baseline--turn-udp"):
        body = section(text, anchor)
        assert "no timeline recorded" in body and "<img" not in body


def test_key_figures_and_missing_fields(run_dir: Path) -> None:
    text, _ = read_page(write_report(run_dir))
    full = section(text, "call-baseline--direct")
    assert "host/udp-&gt;srflx" in full and "4.12 (ok)" in full
    assert "accept-established" in full and "1210" in full
    assert '<audio controls preload="none" src="calls/baseline--direct/callee-received.wav">' \
        in full
    assert 'href="calls/baseline--direct/capture.pcap"' in full
    failed = section(text, "call-dpi-stun-drop--direct")
    assert "ice-failed at 10.20 s" in failed and "drop-stun" in failed
    assert "callee-received.wav <span class=\"muted\">(missing)</span>" in failed
    assert "no packet capture" in failed and "<audio" not in failed
    old = section(text, "call-relay-block--turn-tls-443")
    # Absent fields are "not recorded"; its recordings are found in its call directory.
    assert old.count("not recorded") >= 4
    assert 'src="calls/relay-block--turn-tls-443/caller-received.wav"' in old
    nulls = section(text, "call-relay-block--direct")
    assert "<td>—</td>" in nulls and "error" not in nulls.split("Key figures")[0]
    lossy = section(text, "call-udp-throttle--turn-udp")
    assert "— (skipped: no reference)" in lossy and "no rule counted a packet" in lossy
    assert "policy-swap" in lossy and "Injected faults" in lossy
    outside = section(text, "call-baseline--turn-udp")
    assert "../outside.wav <span class=\"muted\">(outside the run directory)" in outside
    assert "/etc/passwd <span class=\"muted\">(outside the run directory)" in outside
    assert 'href="../outside.wav"' not in outside and 'href="/etc/passwd"' not in outside
    assert "<th scope=\"row\">expected</th><td>none</td>" in outside


def test_environment_table(run_dir: Path) -> None:
    text, page = read_page(write_report(run_dir))
    env = text.split('id="environment"', 1)[1]
    for word in ("ru-to-abroad", "6.1.0-test", "aiortc", "1.9.0", "nftables", "tcpdump"):
        assert word in env
    statuses = page.find("td", "status")
    assert [s["class"] for s in statuses] == ["status pass", "status fail"]


def test_environment_names_the_commit(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path, environment={**ENVIRONMENT, "commit": "615dd64-dirty"})
    env = read_page(write_report(run_dir))[0].split('id="environment"', 1)[1]
    assert '<th scope="row">commit</th><td>615dd64-dirty</td>' in env
    older = build_run(tmp_path, environment=ENVIRONMENT, name="run2")  # before it was recorded
    env = read_page(write_report(older))[0].split('id="environment"', 1)[1]
    assert ">commit</th>" not in env


def test_without_environment_it_says_not_recorded(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path, records=[make_record("baseline", "direct")])
    text, page = read_page(write_report(run_dir))
    check_self_contained(text, page, run_dir)
    env = text.split('id="environment"', 1)[1]
    assert "not recorded" in env and "vm" in env


def test_latest_link_and_results_json_name_the_same_run(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path)
    (tmp_path / "latest").symlink_to(run_dir.name)
    assert write_report(tmp_path / "latest") == run_dir.resolve() / "report.html"
    assert write_report(run_dir / "results.json") == run_dir.resolve() / "report.html"
    assert not list(run_dir.glob(".*.tmp"))


def test_empty_run_and_unreadable_runs(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path, records=[])
    text, page = read_page(write_report(run_dir))
    assert "no call records" in text and page.find("a", "entry") == []
    with pytest.raises(ReportError, match="no such run directory"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no results.json"):
        write_report(tmp_path / "empty")
    (tmp_path / "empty" / "results.json").write_text("{not json")
    with pytest.raises(ReportError, match="unreadable"):
        write_report(tmp_path / "empty")


def test_hostile_values_do_not_break_the_page(tmp_path: Path) -> None:
    wrong_types: dict[str, Any] = {"mos": "high", "expected": [1]}
    weird = make_record("p<o>l \"icy\"", "direct", **wrong_types, setup_s=True,
                        timeline={"t": 1}, events="boom", pesq=[4.0], files="x.wav",
                        censor_counters={"rule": "r"}, failed_at_s="soon",
                        directions=["x", {"receiver": None, "mos": "?"}])
    weird.pop("outcome")
    run_dir = build_run(tmp_path, records=[weird, make_record("p<o>l \"icy\"", "direct")])
    text, page = read_page(write_report(run_dir))
    check_self_contained(text, page, run_dir)
    assert len(page.find("a", "entry")) == 2
    assert "p&lt;o&gt;l &quot;icy&quot;" in text


def test_real_results_json(tmp_path: Path) -> None:
    source = paths.RESULTS / "latest" / "results.json"
    if not source.is_file():
        pytest.skip(f"no real run to report on ({source} is absent)")
    run_dir = tmp_path / "real"
    run_dir.mkdir()
    shutil.copy(source, run_dir / "results.json")
    calls = json.loads(source.read_text())["calls"]
    text, page = read_page(write_report(run_dir))
    check_self_contained(text, page, run_dir)
    entries = page.find("a", "entry")
    assert len(entries) == len(calls)
    verdicts = sorted({"pass": "pass", "fail": "fail"}.get(c["verdict"], "noexp") for c in calls)
    assert sorted((set(e["class"].split()) - {"entry"}).pop() for e in entries) == verdicts
    with_timeline = sum(bool(c.get("timeline") or c.get("timeline_reverse")) for c in calls)
    assert len([i for i in page.find("img") if i["src"].startswith("data:")]) == with_timeline
    assert len(load_run(run_dir).calls) == len(calls)


# ---------------------------------------------------------------- plots

def test_plot_is_a_small_deterministic_png() -> None:
    events = [{"t": 5.0, "kind": "policy-swap", "detail": ""},
              {"t": 5.2, "kind": "mystery", "detail": ""}]
    first = timeline_png(timeline(15, lossy=range(5, 9)), timeline(15), events,
                         failed_at_s=14.0, failure_kind="media-stalled")
    again = timeline_png(timeline(15, lossy=range(5, 9)), timeline(15), events,
                         failed_at_s=14.0, failure_kind="media-stalled")
    assert first is not None and first == again
    assert png_size(first) == (800, 300)
    assert len(first) < 200_000


def test_plot_of_nothing_is_none_and_one_direction_is_enough() -> None:
    assert timeline_png(None) is None
    assert timeline_png([]) is None
    assert timeline_png(["junk", {"t": "x"}, {"received": 3}], None, [{"t": 1}]) is None
    only_reverse = timeline_png(None, timeline(3, mos=None))
    assert only_reverse is not None and png_size(only_reverse) == (800, 300)
    single = timeline_png([{"t": 0, "received": None, "lost": None}])
    assert single is not None


def test_a_record_survives_the_round_trip_through_results_json() -> None:
    """`make scenarios JOBS=N` merges the workers' records through
    record_from_dict: nothing a record carries may be lost on the way."""
    record = CallRecord(topology="t", policy="p", strategy="direct", connected=True,
                        setup_s=0.5, loss_pct=1.0, jitter_ms=2.0, rtt_ms=3.0, mos=4.2,
                        expected={"outcome": "connects"}, verdict="pass", outcome="connects",
                        profile="telegram-like", path="tcp-relay",
                        path_changes=[{"role": "caller", "path": "tcp-relay", "at_s": 5.0}],
                        timeline=[{"t": 0, "packets": 50}], events=[{"at_s": 1.0, "what": "x"}],
                        censor_counters=[{"rule": "r", "packets": 3, "bytes": 300}],
                        files={"pcap": "calls/x/censor.pcap"}, pesq={"mos_lqo": 4.1},
                        directions=[Direction("caller", 300, 0, 0.0, 1.0, 40.0, 4.38, 93.0,
                                              frames_received=98, frames_expected=100,
                                              window_s=6.0)],
                        judgement=judgement("pass", "connects", ["ok"],
                                            failures=[{"role": "callee", "kind": "x",
                                                       "at_s": None, "after_media": True}],
                                            rules=[("r", 3, 300)]),
                        tunnel_up_s=2.6)
    assert record_from_dict(json.loads(json.dumps(record.to_dict()))) == record


# ---------------------------------------------------------------- verdicts with their evidence

def judgement(verdict: str, outcome: str, reasons: list[str],
              failures: list[dict[str, Any]] | None = None,
              rules: Sequence[tuple[str, int, int]] = ()) -> dict[str, Any]:
    return {"outcome": outcome, "verdict": verdict, "reasons": reasons,
            "failures": failures or [],
            "deciding_rules": [{"rule": r, "packets": p, "bytes": b} for r, p, b in rules]}


def frames(received: int | None, expected: int | None, window: float | None) -> dict[str, Any]:
    return {"frames_received": received, "frames_expected": expected, "window_s": window}


def judged_records() -> list[dict[str, Any]]:
    """One call of each kind the judge gives: connects/pass [report], fails/pass
    decided by a rule [mechanism], degraded/fail [observed], error, skipped."""
    connects = make_record(
        "baseline", "direct", expected={"outcome": "connects", "basis": "report", "min_mos": 4.0,
                                        "source": "rkn-2025-03, ooni-2024"},
        judgement=judgement("pass", "connects", ["media both ways for the whole window, "
                                                 "MOS 4.38"]),
        tunnel_up_s=None)
    for direction in connects["directions"]:
        direction.update(frames(497, 500, 10.0))
    fails = make_record(
        "rkn-2025-calls", "direct", outcome="fails", mos=None,
        expected={"outcome": "fails", "basis": "mechanism", "decided_by": ["stun-to-relays"],
                  "accepts": ["setup-timeout"]},
        judgement=judgement(
            "pass", "fails",
            ["decided by stun-to-relays counted 14 packets",
             "no media at the caller and callee (caller setup-timeout, callee setup-timeout)"],
            failures=[{"role": "caller", "kind": "setup-timeout", "at_s": 15.0,
                       "after_media": False},
                      {"role": "callee", "kind": "setup-timeout", "at_s": 15.2,
                       "after_media": False}],
            rules=[("stun-to-relays", 14, 1680)]),
        censor_counters=[{"rule": "stun-to-relays", "packets": 14, "bytes": 1680}])
    degraded = make_record(
        "udp-police-16k", "wireguard", outcome="degraded", verdict="fail", mos=1.12,
        expected={"outcome": "fails", "basis": "observed", "decided_by": ["police-udp-16k"],
                  "measured": "2fb5213: connected, degraded, MOS 1.12, 84.9 % loss"},
        judgement=judgement("fail", "degraded",
                            ["expected fails, observed degraded", "E-model MOS 1.12 < 3.0"],
                            rules=[("police-udp-16k", 3120, 410000)]),
        tunnel_up_s=2.61)
    for direction in degraded["directions"]:
        direction.update(frames(75, 500, 9.8))
    error = make_record(
        "baseline", "turn-udp", outcome="error", verdict="error", mos=None,
        expected={"outcome": "connects", "basis": "mechanism"},
        judgement=judgement("error", "error", ["could not be judged", "callee: peer-crashed"],
                            failures=[{"role": "callee", "kind": "peer-crashed", "at_s": 3.4,
                                       "after_media": False}]))
    uncaused = make_record(
        "relay-block", "turn-tls-443", outcome="fails", verdict="error", mos=None,
        expected={"outcome": "fails", "basis": "mechanism", "decided_by": ["block-relays"]},
        judgement=judgement("error", "fails",
                            ["fails, but no deciding rule counted a packet (block-relays=0): "
                             "the censor did not cause it"],
                            rules=[("block-relays", 0, 0)]))
    skipped = [make_record(
        "vpn-block", strategy, outcome="skipped", verdict="skipped", mos=None,
        connected=False, setup_s=None, directions=[],
        expected={"outcome": "fails", "basis": "mechanism", "decided_by": ["handshake"]},
        judgement=judgement("skipped", "skipped", [f"missing {tools}"]))
        for strategy, tools in (("wireguard", "wireguard-go, wg"), ("openvpn-tcp", "openvpn"))]
    return [connects, fails, degraded, error, uncaused, *skipped]


def records_of(raws: list[dict[str, Any]]) -> list[CallRecord]:
    return [record_from_dict(json.loads(json.dumps(r))) for r in raws]


def table_line(table: str, *words: str) -> str:
    (line,) = [ln for ln in table.splitlines() if all(w in ln.split() for w in words)]
    return line


def test_table_shows_basis_decided_by_and_counts_errors_and_skips_apart() -> None:
    table = format_table(records_of(judged_records()))
    header = table.splitlines()[0]
    assert "decided by" in header and header.index("verdict") < header.index("decided by")
    assert "connects mos>=4.0 [report]" in table_line(table, "baseline", "direct")
    fails = table_line(table, "rkn-2025-calls", "direct")
    assert "fails [mechanism]" in fails and "stun-to-relays=14" in fails
    assert re.search(r"\bpass\b", fails)
    degraded = table_line(table, "udp-police-16k")
    assert "fails [observed]" in degraded and "FAIL" in degraded
    assert "police-udp-16k=3120" in degraded
    error = table_line(table, "baseline", "turn-udp")
    assert re.search(r"\berror\s+ERROR\b", error)
    assert "block-relays=0" in table_line(table, "relay-block") and \
        "ERROR" in table_line(table, "relay-block")
    assert re.search(r"\bskipped\s+skipped\b", table_line(table, "vpn-block", "wireguard"))
    footer = table.splitlines()[-2:]
    assert footer == [
        "2/7 calls as expected; 1 failed; 2 calls could not be judged (error); "
        "2 skipped (missing wireguard-go, wg, openvpn)",
        "expectations: 1 report, 1 mechanism, 1 observed (judged calls)"]


def test_table_footer_counts_without_errors_and_for_old_records() -> None:
    old = make_record("udp-throttle", "direct", outcome="degraded", mos=1.2,
                      expected={"outcome": "degraded", "max_mos": 3.0})
    table = format_table(records_of([old, make_record("baseline", "direct")]))
    line = table_line(table, "udp-throttle")
    assert "degraded mos<3.0" in line and "[" not in line
    assert line.split()[line.split().index("pass") + 1] == "-"  # nothing decided it
    assert table.splitlines()[-2:] == [
        "2/2 calls as expected; 0 failed; 0 calls could not be judged (error); 0 skipped",
        "expectations: 0 report, 0 mechanism, 0 observed, 2 without a basis (judged calls)"]
    single = format_table(records_of([judged_records()[3]]))
    assert "0/1 calls as expected; 0 failed; 1 call could not be judged (error)" in single
    # Errors and skips are no judged calls: their bases are not counted.
    assert single.endswith("expectations: 0 report, 0 mechanism, 0 observed (judged calls)")


def test_tally_counts_each_verdict_once() -> None:
    counts = tally(records_of(judged_records()))
    assert (counts.total, counts.passed, counts.failed, counts.errors, counts.skipped) == \
        (7, 2, 1, 2, 2)
    assert counts.missing == ("wireguard-go", "wg", "openvpn")
    assert dict(counts.bases) == {"report": 1, "mechanism": 1, "observed": 1}


@pytest.fixture
def judged_run(tmp_path: Path) -> Path:
    return build_run(tmp_path, records=judged_records())


def test_header_counts_errors_skips_and_bases_apart(judged_run: Path) -> None:
    text, page = read_page(write_report(judged_run))
    check_self_contained(text, page, judged_run)
    header = text.split("</header>", 1)[0]
    assert "<strong>7 calls: </strong>" in header
    for css, words in (("pass", "2 as expected"), ("fail", "1 not as expected"),
                       ("error", "2 calls could not be judged (error)"),
                       ("skipped", "2 skipped (missing wireguard-go, wg, openvpn)")):
        assert f'<span class="badge {css}">{words}</span>' in header
    assert "expectations: 1 report, 1 mechanism, 1 observed (judged calls)" in header
    assert '<a href="#unjudged">' in header


def test_matrix_colours_errors_and_skips_apart_and_shows_basis_and_cause(
        judged_run: Path) -> None:
    text, page = read_page(write_report(judged_run))
    entries = {e["data-call"]: (set(e["class"].split()) - {"entry"}).pop()
               for e in page.find("a", "entry")}
    assert entries == {"call-baseline--direct": "pass", "call-rkn-2025-calls--direct": "pass",
                       "call-udp-police-16k--wireguard": "fail",
                       "call-baseline--turn-udp": "error",
                       "call-relay-block--turn-tls-443": "error",
                       "call-vpn-block--wireguard": "skipped",
                       "call-vpn-block--openvpn-tcp": "skipped"}
    cells = [(set(c["class"].split()) - {"cell"}).pop() for c in page.find("td", "cell")]
    assert cells.count("error") == 2 and cells.count("skipped") == 2
    matrix = text.split('id="matrix"', 1)[1].split('id="unjudged"', 1)[0]
    assert "expected: connects mos&gt;=4.0 [report: rkn-2025-03, ooni-2024]" in matrix
    assert "expected: fails [mechanism]" in matrix
    assert "expected: fails [observed]" in matrix
    assert "measured: 2fb5213: connected, degraded, MOS 1.12, 84.9 % loss" in matrix
    assert '<span class="decided">decided by stun-to-relays=14 packets</span>' in matrix
    assert '<span class="decided">decided by police-udp-16k=3120 packets</span>' in matrix
    assert '<span class="decided">decided by block-relays=0 packets</span>' in matrix
    # An error names what broke, not just "could not be judged"; a skip why it was not placed.
    assert '<span class="why">callee: peer-crashed</span>' in matrix
    assert "not placed: missing wireguard-go, wg" in matrix
    assert "swatch error" in matrix and "swatch skipped" in matrix


def test_calls_that_could_not_be_judged_are_listed_with_their_reasons(judged_run: Path) -> None:
    text, _ = read_page(write_report(judged_run))
    unjudged = text.split('<section id="unjudged">', 1)[1].split("</section>", 1)[0]
    assert "<h2>Calls that could not be judged</h2>" in unjudged
    rows = re.findall(r'<tr class="(error|skipped)"><td><a href="#([^"]+)">', unjudged)
    assert rows == [("error", "call-baseline--turn-udp"),
                    ("error", "call-relay-block--turn-tls-443"),
                    ("skipped", "call-vpn-block--wireguard"),
                    ("skipped", "call-vpn-block--openvpn-tcp")]
    assert "<li>callee: peer-crashed</li>" in unjudged
    assert "no deciding rule counted a packet (block-relays=0)" in unjudged
    assert "<li>missing wireguard-go, wg</li>" in unjudged
    assert "<li>missing openvpn</li>" in unjudged
    assert "baseline--direct" not in unjudged and "udp-police-16k" not in unjudged


def test_a_run_without_errors_says_every_call_was_judged(tmp_path: Path) -> None:
    text, _ = read_page(write_report(build_run(tmp_path, records=judged_records()[:3])))
    unjudged = text.split('<section id="unjudged">', 1)[1].split("</section>", 1)[0]
    assert "none: every call was judged" in unjudged and "<table" not in unjudged
    assert '<span class="badge error">0 calls could not be judged (error)</span>' in text


def test_call_detail_carries_the_judgement_and_its_evidence(judged_run: Path) -> None:
    text, _ = read_page(write_report(judged_run))
    fails = section(text, "call-rkn-2025-calls--direct")
    assert "<strong>decided by</strong> stun-to-relays counted 14 packets (1680 bytes)" in fails
    assert "<li>decided by stun-to-relays counted 14 packets</li>" in fails
    assert ('<tr><td>stun-to-relays</td><td class="num">14</td><td class="num">1680</td></tr>'
            in fails)
    failures = fails.split("Failures of both peers", 1)[1]
    assert re.search(r"<td>caller</td><td class=\"nowrap\">setup-timeout</td>"
                     r"<td class=\"num\">15.00 s</td><td>no</td>", failures)
    assert "<td>callee</td>" in failures
    assert "mechanism (derived from the rules alone)" in fails and "accepts" in fails
    # A negative verdict carries the rule that decided it and what it counted.
    failed = section(text, "call-udp-police-16k--wireguard")
    assert "<strong>decided by</strong> police-udp-16k counted 3120 packets" in failed
    assert '<p class="why fail">expected fails, observed degraded</p>' in failed
    assert "observed (measured: 2fb5213: connected, degraded, MOS 1.12, 84.9 % loss)" in failed
    assert "2.61 s (part of the setup time)" in failed
    assert "75 / 500 (15.0 %)" in failed and "9.8 s" in failed
    # A rule that counted nothing is marked: it did not cause the call's fate.
    uncaused = section(text, "call-relay-block--turn-tls-443")
    assert ('<tr class="zero"><td>block-relays</td><td class="num">0</td>' in uncaused)
    assert '<p class="why error">fails, but no deciding rule counted a packet' in uncaused
    error = section(text, "call-baseline--turn-udp")
    assert '<span class="badge error">error</span>' in error
    assert "<li>could not be judged</li><li>callee: peer-crashed</li>" in error
    assert '<p class="why error">callee: peer-crashed</p>' in error
    connects = section(text, "call-baseline--direct")
    assert "497 / 500 (99.4 %)" in connects and "10.0 s" in connects
    assert "report (sources: rkn-2025-03, ooni-2024)" in connects
    assert '<p class="why' not in connects
    skipped = section(text, "call-vpn-block--wireguard")
    assert "<li>missing wireguard-go, wg</li>" in skipped and "Key figures" not in skipped
    assert re.search(r'<section class="call skipped" id="call-vpn-block--wireguard">', text)


def test_old_records_say_the_judgement_was_not_recorded(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path, records=[make_record("baseline", "direct")])
    text, _ = read_page(write_report(run_dir))
    body = section(text, "call-baseline--direct")
    assert "reasons not recorded" in body
    assert "<th scope=\"row\">tunnel up</th><td>not recorded</td>" in body
    assert "[basis not recorded]" in text


def test_record_from_dict_reads_old_and_new_fields() -> None:
    old = record_from_dict(make_record("baseline", "direct"))
    assert old.judgement == {} and old.tunnel_up_s is None
    assert [(d.frames_received, d.frames_expected, d.window_s) for d in old.directions] == \
        [(None, None, None)] * 2
    raw = judged_records()[2]
    new = record_from_dict(raw)
    assert new.judgement == raw["judgement"] and new.tunnel_up_s == 2.61
    assert [(d.frames_received, d.frames_expected, d.window_s) for d in new.directions] == \
        [(75, 500, 9.8)] * 2
    assert new.expected is not None and new.expected["basis"] == "observed"
    skipped = record_from_dict(judged_records()[5])
    assert (skipped.outcome, skipped.verdict) == ("skipped", "skipped")


def test_hostile_judgements_do_not_break_the_page_or_the_table(tmp_path: Path) -> None:
    weird = make_record("p", "direct", verdict="error", outcome="error", tunnel_up_s="soon",
                        expected={"outcome": "fails", "basis": 7, "source": ["a", None],
                                  "decided_by": "link"},
                        judgement={"reasons": "boom", "failures": [1, None, {"kind": None}],
                                   "deciding_rules": [{"rule": None, "packets": "many"}, "x"]})
    weird["directions"][0].update(frames_received="x", frames_expected=True, window_s=None)
    other = make_record("q", "direct", judgement=["not", "a", "mapping"])
    run_dir = build_run(tmp_path, records=[weird, other])
    text, page = read_page(write_report(run_dir))
    check_self_contained(text, page, run_dir)
    assert len(page.find("a", "entry")) == 2
    table = format_table([call.record for call in load_run(run_dir).calls])
    assert "?=?" in table and "ERROR" in table


def test_a_call_on_a_late_link_emulator_says_so_under_its_heading(tmp_path: Path) -> None:
    late = {"link": "caller→cgnat", "packets": 1000, "p99_late_us": 9000, "max_late_us": 12000,
            "tolerance_us": 2000, "over_tolerance": 400, "steal_pct": 9.5, "missed": True}
    on_time = dict(late, link="cgnat→caller", over_tolerance=0, missed=False)
    records = [make_record("baseline", "direct", link_fidelity=[late, on_time]),
               make_record("baseline", "turn-udp", link_fidelity=[on_time])]
    text, _ = read_page(write_report(build_run(tmp_path, records)))
    marked = section(text, "call-baseline--direct")
    assert "link emulator late" in marked
    assert "caller→cgnat: 400 of 1000 packets later than 2000 us (p99 9000 us)" in marked
    assert "cgnat→caller" not in marked
    assert "link emulator late" not in section(text, "call-baseline--turn-udp")


def test_a_call_that_passed_as_the_declared_rare_outcome_is_marked_in_the_matrix(
        tmp_path: Path) -> None:
    expected = {"outcome": "degraded", "basis": "report", "decided_by": ["loss"],
                "rarely": {"outcome": "fails", "share_pct": 1.8, "decided_by": ["dialect"],
                           "accepts": ["relay-unreachable"], "why": "0.75^14"}}
    judgement = {"outcome": "fails", "verdict": "pass", "reasons": ["the rare outcome"],
                 "failures": [], "deciding_rules": [], "rare": True}
    records = [make_record("p", "direct", outcome="fails", expected=expected,
                           judgement=judgement),
               make_record("p", "turn-udp", outcome="degraded", expected=expected,
                           judgement=dict(judgement, outcome="degraded", rare=False))]
    text, _ = read_page(write_report(build_run(tmp_path, records)))
    matrix = text.split('id="matrix"', 1)[1].split('id="unjudged"', 1)[0]
    assert matrix.count("rare outcome, declared about 1.8 % of calls") == 1
