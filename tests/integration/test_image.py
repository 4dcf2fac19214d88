"""The testbed in a container: `make image` builds callwall:latest, and real
calls go through the emulated censor inside it, with no network (`--network
none`: the lab's namespaces live inside the container's own).

The image is built and run through harness/containers/engine.py: the engine at
$DOCKER_HOST (or the default socket) if one answers, else a private dockerd
that the engine module starts and stops (CALLWALL_PRIVATE_DOCKERD=0 forbids
that, and then this test skips where no engine answers)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.containers.engine import Engine, EngineError, engine
from tests.integration.rootsnapshot import RootSnapshot

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (docker, debootstrap)"),
]

REPO = Path(__file__).resolve().parents[2]
IMAGE = "callwall:latest"
BUILD_TIMEOUT_S = 20 * 60
CALL_TIMEOUT_S = 5 * 60


def _private_allowed() -> bool:
    setting = os.environ.get("CALLWALL_PRIVATE_DOCKERD", "1").strip().lower()
    return setting not in ("0", "false", "no")


@pytest.fixture(scope="module")
def image() -> str:
    """callwall:latest, built by `make image` from this work tree."""
    env = {**os.environ, "IMAGE": IMAGE}
    if _private_allowed():
        env["CALLWALL_PRIVATE_DOCKERD"] = "1"
    done = subprocess.run(["make", "-C", str(REPO), "image"], env=env, capture_output=True,
                          text=True, timeout=BUILD_TIMEOUT_S, check=False)
    if not _private_allowed() and "no Docker engine answers" in done.stderr:
        pytest.skip("no Docker engine answers, and CALLWALL_PRIVATE_DOCKERD=0")
    assert done.returncode == 0, f"make image failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert f"image: {IMAGE} built" in done.stdout
    return IMAGE


@pytest.fixture(scope="module")
def docker(image: str) -> Iterator[Engine]:
    """An engine that holds the image (the one `make image` used)."""
    try:
        with engine(private=_private_allowed()) as found:
            yield found
    except EngineError as exc:
        pytest.skip(str(exc))


@dataclass
class ContainerCall:
    returncode: int
    stdout: str
    stderr: str
    row: dict[str, str]  # the printed table's row
    record: dict[str, Any]  # results.json's call record


def _table_row(stdout: str) -> dict[str, str]:
    """The one row of `callwall run`'s table, by the columns its dashes mark."""
    lines = stdout.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("-----"))
    header, row = lines[rule - 1], lines[rule + 1]
    spans, start = [], 0
    for dashes in lines[rule].split("  "):
        spans.append((start, start + len(dashes)))
        start += len(dashes) + 2
    return {header[a:b].strip(): row[a:b].strip() for a, b in spans}


def call_in_container(docker: Engine, image: str, results: Path,
                      *callwall_args: str) -> ContainerCall:
    """`callwall run ARGS` in a fresh privileged container without network."""
    results.mkdir(parents=True)
    argv = ["docker", "run", "--rm", "--privileged", "--network", "none",
            "-v", f"{results}:/results", "-e", "CALLWALL_RESULTS=/results",
            image, "callwall", "run", *callwall_args]
    done = subprocess.run(argv, env=docker.env(), capture_output=True, text=True,
                          timeout=CALL_TIMEOUT_S, check=False)
    context = f"{' '.join(argv)}\nexit {done.returncode}\n{done.stdout}\n{done.stderr[-4000:]}"
    written = [p for p in results.glob("*/results.json") if p.parent.name != "latest"]
    assert len(written) == 1, f"expected one results.json:\n{context}"
    (record,) = json.loads(written[0].read_text())["calls"]
    return ContainerCall(done.returncode, done.stdout, done.stderr, _table_row(done.stdout),
                         record)


def _enforced(record: dict[str, Any], rule_id: str) -> int:
    """Packets the censor's rule `rule_id` enforced its action on in this call."""
    return sum(c["packets"] for c in record["censor_counters"]
               if c["rule"].startswith(f"{rule_id}:") and "enforce" in c["rule"])


def test_turn_tls_443_passes_the_stun_dpi_in_a_container(
        docker: Engine, image: str, tmp_path: Path) -> None:
    before = RootSnapshot.take()
    call = call_in_container(docker, image, tmp_path / "results",
                             "-t", "ru-to-abroad", "-p", "dpi-stun-drop", "-s", "turn-tls-443")
    print(call.stdout)
    assert call.returncode == 0, call.stderr[-3000:]
    assert call.row["policy"] == "dpi-stun-drop" and call.row["strategy"] == "turn-tls-443"
    assert call.row["outcome"] == "connects" and call.row["verdict"] == "pass", call.row
    record = call.record
    assert record["connected"] is True and record["verdict"] == "pass"
    assert record["mos"] >= 4.0, record["mos"]
    assert record["selected_pair"], record
    assert "relay/tls" in call.row["path"], call.row
    # Nothing in the root namespace changed (the suite's leak check says the same).
    after = RootSnapshot.take()
    for field in ("links", "ruleset", "qdiscs", "sysctls", "netns"):
        assert getattr(after, field) == getattr(before, field), field


def test_stun_to_the_relay_is_dropped_by_the_censor_in_a_container(
        docker: Engine, image: str, tmp_path: Path) -> None:
    call = call_in_container(docker, image, tmp_path / "results",
                             "-t", "ru-to-abroad", "-p", "dpi-stun-drop", "-s", "turn-udp")
    print(call.stdout)
    assert call.returncode == 0, f"exits 0 when a call is as expected: {call.stderr[-3000:]}"
    assert call.row["outcome"] == "fails" and call.row["verdict"] == "pass", call.row
    record = call.record
    assert record["connected"] is False and record["outcome"] == "fails"
    # The censor, not the container, failed it: its STUN rule dropped packets.
    assert _enforced(record, "stun-at-flow-start") > 0, record["censor_counters"]
