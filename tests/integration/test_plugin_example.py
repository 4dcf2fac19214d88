"""The README's "Writing your own scenario" example, run as it is written
there: a scenario file that uses only callwall's pytest plugin (the `lab` and
`call` fixtures and the `root` marker) and a policy of its own."""

from pathlib import Path

import pytest

from harness.testbed import Lab
from harness.testing.labs import CallPlacer

pytestmark = pytest.mark.root  # skipped, saying what is missing, where no lab can be built

MY_POLICY = Path(__file__).parent / "policies" / "drop-udp-to-relays.yaml"


def test_turn_over_tls_gets_through(call: CallPlacer) -> None:
    record = call(MY_POLICY, "turn-tls-443", media_s=4.0)
    assert record.connected
    assert record.mos is not None and record.mos >= 4.0


def test_turn_over_udp_does_not_and_the_censor_says_why(call: CallPlacer, lab: Lab) -> None:
    record = call(MY_POLICY, "turn-udp", media_s=4.0, setup_timeout_s=8.0)
    assert not record.connected
    dropped = {c["rule"]: c["packets"] for c in record.censor_counters}
    assert dropped.get("drop-udp-to-relays", 0) > 0
    assert lab.registry.state.policy == "drop-udp-to-relays"
