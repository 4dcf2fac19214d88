"""The applier's userspace-stage pieces that need no root: the stage's argv
and the refusal of iptables rules that would leave the CALLWALL chain."""

from __future__ import annotations

import pytest

from harness.censor.applier import ApplyError, apply_iptables_rules, stage_argv
from harness.censor.plan import UserspaceStage
from harness.censor.stage import _parser
from harness.netns.host import LabHost

STAGE = UserspaceStage(rule_id="sni", queue_num=100, candidate_mark=0xCA000001,
                       verdict_mark=0xCA000002, classifier="tls-sni",
                       params=(("names", "twitter.com,t.co"), ("match", "substring")))


def test_stage_argv_round_trips_through_the_stage_parser() -> None:
    argv = stage_argv(STAGE)
    assert argv[1:3] == ["-m", "harness.censor.stage"]
    args = _parser().parse_args(argv[3:])
    assert (args.queue, args.candidate_mark, args.verdict_mark) == (100, 0xCA000001, 0xCA000002)
    assert args.param == [("names", "twitter.com,t.co"), ("match", "substring")]


@pytest.mark.parametrize("rule", [("-t", "nat", "-j", "ACCEPT"), ("-A", "INPUT", "-j", "DROP"),
                                  ("-F",), ()])
def test_rules_that_would_leave_our_chain_are_refused(rule: tuple[str, ...]) -> None:
    nowhere = LabHost("censor", "censor", pid=0)  # never reached: refused before running
    with pytest.raises(ApplyError, match="bare rule specification"):
        apply_iptables_rules(nowhere, [rule])
