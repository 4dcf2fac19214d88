"""The `callwall` command.

  callwall up TOPOLOGY [--policy P]           bring a lab up and leave it running
  callwall exec [--lab ID] HOST -- CMD...     run a program inside a lab host
  callwall policy apply [--lab ID] POLICY     swap the censor's policy (atomic)
  callwall policy show POLICY                 print the compiled ruleset, explained
  callwall link set [--lab ID] A B [...]      change a link direction's impairment, live
  callwall down [--lab ID]                    remove the lab
  callwall status                             list labs
  callwall clean                              remove labs whose owner died
  callwall run -t T -p P -s S                 place one call and print its result
  callwall demo [SCRIPT] [--speed X]          a class demo: one call, the censor changes under it
  callwall validate [FILE...]                 check spec files (default: the shipped ones)
  callwall report [RUN] | --compare OLD NEW | --merge RUN... [--out DIR]
                                              a run's report; compare two runs; merge shards
  callwall list policies|topologies|profiles|strategies   one line each
  callwall doctor                             what this machine offers, which backends

--lab ID chooses the lab (its id is in `callwall status`) where several run;
with one running lab it may be left out.

Exit codes: 0 success, 1 failure, 2 bad input (spec, arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from harness import paths
from harness.calls import CallError, CallSettings, check_strategy
from harness.censor.compiler import CompileError, bindings_for, compile_policy
from harness.netns.capabilities import missing_lab_capabilities
from harness.netns.environment import describe_environment, source_commit
from harness.netns.registry import OwnedProcess, Registry, list_runs, terminate
from harness.netns.stop_signals import StopRequested, install_stop_handlers
from harness.report.compare import compare_runs, render_text, write_comparison_html
from harness.report.html import ReportError, resolve_run_dir, write_report
from harness.report.merge import merge_runs, render_merge_text
from harness.report.results import format_table, new_results_dir, point_latest, write_results
from harness.reproduce import Cell, progress_printer, render, reproduce
from harness.session import judged_call
from harness.spec.demo import DEFAULT_DEMO, demo_path, is_demo_file, load_demo
from harness.spec.descriptor import (
    DESCRIPTOR_FILE,
    descriptor_files,
    load_descriptor,
    profile_description,
    profiles,
    strategies,
    strategy_description,
)
from harness.spec.impairment import Impairment
from harness.spec.matrix import is_matrix_file, load_matrix, matrix_cells
from harness.spec.names import PROFILE_DESCRIPTIONS, STRATEGY_DESCRIPTIONS
from harness.spec.policy import load_policy
from harness.spec.presets import IDEAL_LINK, link_profile_names
from harness.spec.schema import SpecError
from harness.spec.topology import load_topology
from harness.testbed import Lab, remove_stale_labs

EXIT_BAD_INPUT = 2
# `callwall run`: the call could not be judged (the harness or a tool broke).
EXIT_UNJUDGED = 3
UP_TIMEOUT_S = 60.0
DOWN_TIMEOUT_S = 30.0


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except SpecError as exc:
        print(f"callwall: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (paths.SpecNotFound, CompileError) as exc:
        print(f"callwall: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CliError as exc:
        print(f"callwall: {exc}", file=sys.stderr)
        return exc.code
    except StopRequested as exc:
        print(f"callwall: {exc}; the lab was removed", file=sys.stderr)
        return 130


# ---------------------------------------------------------------- lab lifecycle

def cmd_up(args: argparse.Namespace) -> int:
    _choose_link_backend(args)
    topology_file = paths.topology_path(args.topology)
    topology = load_topology(topology_file)
    policy_file = paths.policy_path(args.policy)
    load_policy(policy_file, topology.sets.keys())
    _require_lab_capabilities()
    argv = [sys.executable, "-m", "harness.supervisor", "--topology", str(topology_file),
            "--policy", str(policy_file)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            start_new_session=True, text=True)
    message = _await_supervisor(proc)
    if "error" in message:
        raise CliError(f"lab did not come up: {message['error']}")
    lab = Lab.attach(Registry.load(Registry.dir_for(message["ready"])))
    _print_lab(lab)
    return 0


def _await_supervisor(proc: subprocess.Popen[str]) -> dict[str, str]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.stdout.close()
    if not line:
        proc.wait(timeout=UP_TIMEOUT_S)
        raise CliError(f"the lab supervisor exited with {proc.returncode} before reporting")
    message: dict[str, str] = json.loads(line)
    return message


def _print_lab(lab: Lab) -> None:
    state = lab.registry.state
    print(f"lab {state.run_id} is up: topology {lab.topology.name}, policy {state.policy}")
    for name, host in lab.hosts.items():
        addresses = ", ".join(str(i.ip) for i in lab.topology.interfaces(name))
        print(f"  {name:<10} {host.role:<11} {addresses}")
    if lab.services:
        s = lab.services
        print(f"  relay     turn:{s.relay_ip}:{s.turn_port} (udp, tcp), "
              f"turns:{s.relay_ip}:{s.turns_port}; user {s.turn_username} "
              f"password {s.turn_password}")
        print(f"  stun      {s.stun_ip}:{s.stun_port}    signalling tcp "
              f"{s.signalling_ip}:{s.signalling_port}    relay CA {s.ca_file}")
    print(f"try: callwall exec caller -- ping -c 3 {lab.topology.address_of('relay')}"
          if "relay" in lab.topology.hosts else "try: callwall exec caller -- ip addr")
    print("stop: callwall down")


def cmd_exec(args: argparse.Namespace) -> int:
    lab_id, command = exec_command(args)
    if not command:
        raise CliError("nothing to run: callwall exec [--lab ID] HOST -- CMD...", EXIT_BAD_INPUT)
    lab = Lab.attach(_select_lab(lab_id))
    argv = lab.host(args.host).argv(command)
    os.execvp(argv[0], argv)
    return 1  # not reached


def exec_command(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """The lab and the program of `callwall exec`. Everything after HOST is the
    program's, so that its own options need no quoting; only a `--lab ID` right
    after HOST is taken as ours, as other verbs take --lab anywhere."""
    lab_id: str | None = args.lab
    command = list(args.command)
    if command[:1] == ["--lab"] and len(command) > 1:
        lab_id, command = command[1], command[2:]
    elif command[:1] and command[0].startswith("--lab="):
        lab_id, command = command[0].removeprefix("--lab="), command[1:]
    return lab_id, command[1:] if command[:1] == ["--"] else command


def cmd_down(args: argparse.Namespace) -> int:
    registry = _select_lab(args.lab)
    run_id = registry.state.run_id
    if registry.state.owner_alive():
        owner = registry.state
        terminate_owner(owner.owner_pid, owner.owner_start_ticks)
        _wait_removed(registry.dir)
    if registry.dir.exists():  # the supervisor is gone: remove by the state file alone
        registry.remove()
    print(f"lab {run_id} removed")
    return 0


def terminate_owner(pid: int, start_ticks: int) -> None:
    terminate(OwnedProcess(pid, start_ticks, "", "supervisor"), grace_s=DOWN_TIMEOUT_S)


def _wait_removed(run_dir: Path) -> None:
    deadline = time.monotonic() + DOWN_TIMEOUT_S
    while run_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def cmd_status(args: argparse.Namespace) -> int:
    runs = list_runs()
    if not runs:
        print("no labs")
    for run in runs:
        state = run.state
        alive = "running" if state.owner_alive() else "stale (owner gone: callwall clean)"
        print(f"{state.run_id}  {Path(state.topology).stem:<14} policy={state.policy}  "
              f"{state.status}  {alive}")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    if not remove_stale_labs():
        print("nothing to clean")
    return 0


def _select_lab(run_id: str | None) -> Registry:
    runs = [r for r in list_runs() if r.state.owner_alive() or run_id]
    if run_id:
        runs = [r for r in runs if r.state.run_id == run_id]
        if not runs:
            raise CliError(f"no lab {run_id} (see callwall status)")
        return runs[0]
    if not runs:
        raise CliError("no running lab: start one with 'callwall up TOPOLOGY'")
    if len(runs) > 1:
        ids = ", ".join(r.state.run_id for r in runs)
        raise CliError(f"several labs are running ({ids}): choose one with --lab")
    return runs[0]


# ---------------------------------------------------------------- policies

def cmd_policy_apply(args: argparse.Namespace) -> int:
    lab = Lab.attach(_select_lab(args.lab))
    policy = load_policy(paths.policy_path(args.policy), lab.topology.sets.keys())
    plan = lab.apply_policy(policy)
    print(plan.describe())
    print(f"applied to lab {lab.run_id} in one nft transaction")
    return 0


def cmd_policy_show(args: argparse.Namespace) -> int:
    topology = load_topology(paths.topology_path(args.topology))
    policy = load_policy(paths.policy_path(args.policy), topology.sets.keys())
    plan = compile_policy(policy, bindings_for(topology))
    print(plan.describe())
    print()
    print(plan.nft_ruleset, end="")
    for rule in plan.iptables_rules:  # what feeds the userspace stages
        print("iptables -t mangle -A CALLWALL " + " ".join(rule))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    files = args.files or [*paths.all_topologies(), paths.LINK_PRESETS, *paths.all_policies(),
                           *descriptor_files()]
    for file in files:
        path = Path(file)
        if path.name == DESCRIPTOR_FILE:
            load_descriptor(path)
        elif is_demo_file(path):
            load_demo(path)
        elif is_matrix_file(path):  # every call of it must have an expectation
            matrix, loc = load_matrix(path)
            shipped = [p.stem for p in paths.all_policies()]
            matrix_cells(matrix, loc, shipped, lambda name: load_policy(paths.policy_path(name)))
        elif path.parent.name == "topologies":
            load_topology(path)
        elif path.name == "link-presets.yaml":
            from harness.spec.presets import load_preset_file

            load_preset_file(path)
        else:
            load_policy(path)
        print(f"{path}: ok")
    return 0


# ---------------------------------------------------------------- listing

LIST_KINDS = ("policies", "topologies", "profiles", "strategies")
SUMMARY_CHARS = 76


def cmd_list(args: argparse.Namespace) -> int:
    entries = list_entries(args.kind)
    width = max((len(name) for name, _ in entries), default=0)
    for name, summary in entries:
        print(f"{name:<{width}}  {summary}".rstrip())
    return 0


def list_entries(kind: str) -> list[tuple[str, str]]:
    """(name, one-line summary) of each policy, topology, call profile or
    strategy; specs by the name the other verbs take (the file's stem)."""
    if kind == "policies":
        return [(path.stem, summarize(_policy_text(path))) for path in paths.all_policies()]
    if kind == "topologies":
        return [(path.stem, summarize(load_topology(path).description))
                for path in paths.all_topologies()]
    if kind == "profiles":
        return [(name, PROFILE_DESCRIPTIONS.get(name) or profile_description(name))
                for name in profiles()]
    if kind == "strategies":
        return [(name, STRATEGY_DESCRIPTIONS.get(name) or strategy_description(name))
                for name in strategies()]
    raise CliError(f"cannot list {kind!r}: choose one of {', '.join(LIST_KINDS)}",
                   EXIT_BAD_INPUT)


def _policy_text(path: Path) -> str:
    policy = load_policy(path)
    return policy.description or policy.provenance.reported


def summarize(text: str, limit: int = SUMMARY_CHARS) -> str:
    """The first sentence of a spec's text on one line, cut at a word to `limit`."""
    line = " ".join(text.split())
    sentence = line.split(". ", 1)[0].rstrip(".")
    if len(sentence) <= limit:
        return sentence
    cut = sentence[: limit - 1]
    if sentence[limit - 1] != " ":  # inside a word: back to the word's start
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"


# ---------------------------------------------------------------- one call

def _link_profile_option(parser: argparse.ArgumentParser) -> None:
    names = link_profile_names()
    parser.add_argument("--link-profile", default=IDEAL_LINK, choices=names, metavar="NAME",
                        help="the subscriber's access link for the calls, as in a matrix's "
                             "link_profiles: ideal (default) or a preset of topologies/"
                             f"presets/link-presets.yaml ({', '.join(names)})")


def cmd_run(args: argparse.Namespace) -> int:
    _choose_link_backend(args)
    topology_file = paths.topology_path(args.topology)
    topology = load_topology(topology_file)
    policy = load_policy(paths.policy_path(args.policy), topology.sets.keys())
    try:
        check_strategy(args.profile, args.strategy)
    except CallError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    _require_lab_capabilities()
    install_stop_handlers()
    settings = CallSettings(media_s=args.seconds, setup_timeout_s=args.setup_timeout,
                            record_audio=not args.no_audio, capture_pcap=not args.no_pcap)
    with Lab.create(topology_file) as lab:
        lab.up(progress=True)
        results_dir = new_results_dir(paths.RESULTS, lab.run_id)
        print(f"[{lab.run_id}] calling with {args.strategy} ({args.profile}) under "
              f"{policy.name}", file=sys.stderr)
        record = judged_call(lab, policy, args.strategy, results_dir / "calls" / "call-1",
                             settings, profile=args.profile, link_profile=args.link_profile)
        link_backend = lab.registry.state.link_backend
    write_results(results_dir, [record], {"run_id": record.run_id, "kind": "run",
                                          "topology": topology.name,
                                          "environment": describe_environment(link_backend)})
    point_latest(results_dir)
    write_report(results_dir)
    print(json.dumps(record.to_dict(), indent=2) if args.json else format_table([record]))
    print(f"results: {results_dir / 'results.json'}, report: {results_dir / 'report.html'}",
          file=sys.stderr)
    if record.outcome == "error":
        return EXIT_UNJUDGED
    return 0 if record.verdict in ("pass", "no-expectation") else 1


def cmd_reproduce(args: argparse.Namespace) -> int:
    topology_file = paths.topology_path(args.topology)
    topology = load_topology(topology_file)
    policy = load_policy(paths.policy_path(args.policy), topology.sets.keys())
    if args.calls < 1 or args.calls > 200:
        raise CliError(f"--calls must be between 1 and 200, not {args.calls}", EXIT_BAD_INPUT)
    try:
        cells = ([Cell.parse(text) for text in args.cell] if args.cell else
                 [Cell(profile, strategy) for profile, by_strategy in policy.expect.items()
                  for strategy in by_strategy if strategy == "direct"])
    except (ValueError, CallError) as exc:
        raise CliError(f"--cell: {exc}", EXIT_BAD_INPUT) from None
    if not cells:
        raise CliError(f"{policy.name} declares no direct cell: name cells with --cell",
                       EXIT_BAD_INPUT)
    _require_lab_capabilities()
    install_stop_handlers()
    with Lab.create(topology_file) as lab:
        lab.up(progress=True)
        out_dir = new_results_dir(paths.RESULTS, lab.run_id)
        conditions, summaries = reproduce(
            lab, policy, cells, args.calls, out_dir, media_s=args.seconds,
            link_profile=args.link_profile, commit=source_commit(),
            progress=progress_printer(lab.run_id))
    print(render(conditions, summaries))
    print(f"figures: {out_dir / 'reproduce.json'}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from harness.demo import DemoOptions, load_script_policies, run_demo

    _choose_link_backend(args)
    script = load_demo(demo_path(args.script))
    load_script_policies(script)  # bad input before any lab is built
    try:
        options = DemoOptions(speed=args.speed, port=args.port, open_browser=not args.no_browser)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    _require_lab_capabilities()
    install_stop_handlers()

    def announce(line: str) -> None:
        print(line, flush=True)

    view, out_dir = run_demo(script, options, lambda run_id: new_results_dir(paths.RESULTS,
                                                                             run_id), announce)
    point_latest(out_dir.parent)
    if view.status != "done":
        return EXIT_UNJUDGED
    return 0 if view.passed else 1


def cmd_report(args: argparse.Namespace) -> int:
    if args.merge is not None:
        return cmd_report_merge(args)
    if args.out is not None or args.allow_partial:
        raise CliError("--out and --allow-partial go with --merge", EXIT_BAD_INPUT)
    try:
        if args.compare is None:
            print(f"report: {write_report(Path(args.run))}")
            return 0
        old, new = args.compare
        comparison = compare_runs(old, new, args.mos_threshold)
    except ReportError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    print(render_text(comparison))
    page = args.html or resolve_run_dir(new) / f"compare-{resolve_run_dir(old).name}.html"
    print(f"comparison: {write_comparison_html(comparison, page)}")
    return 1 if comparison.has_regression else 0


def cmd_report_merge(args: argparse.Namespace) -> int:
    """`callwall report --merge RUN...`: the shards of one matrix as one run."""
    if args.compare is not None:
        raise CliError("--merge and --compare: one at a time (merge, then compare the "
                       "merged run)", EXIT_BAD_INPUT)
    try:
        merged = merge_runs(args.merge, args.out, allow_partial=args.allow_partial)
    except ReportError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    print(render_merge_text(merged))
    return 0


def _require_lab_capabilities() -> None:
    """Labs need root and a few system packages: say which are missing, up front."""
    missing = missing_lab_capabilities()
    if missing:
        raise CliError("cannot build a lab here; missing: " + "; ".join(missing)
                       + " (make install sets up the packages)")


# ---------------------------------------------------------------- links and doctor

def cmd_link_set(args: argparse.Namespace) -> int:
    from harness.link.apply import LinkSetError, set_impairment
    from harness.link.backend import LinkBackendError
    from harness.link.selection import NoLinkBackend

    lab = Lab.attach(_select_lab(args.lab))
    try:
        impairment = None if args.clear else _impairment_from_args(args)
        pairs = {"a-b": [(args.host_a, args.host_b)], "b-a": [(args.host_b, args.host_a)],
                 "both": [(args.host_a, args.host_b), (args.host_b, args.host_a)]}
        for sender, receiver in pairs[args.direction]:
            label, description = set_impairment(lab.network, sender, receiver, impairment)
            print(f"{sender} -> {receiver} ({label}): {description}")
    except (ValueError, LinkSetError) as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None
    except (LinkBackendError, NoLinkBackend) as exc:
        raise CliError(str(exc)) from None
    backend = lab.registry.state.link_backend or "?"
    print(f"lab {lab.run_id}, link backend {backend}")
    return 0


def _impairment_from_args(args: argparse.Namespace) -> Impairment:
    from harness.spec import impairment as model
    from harness.spec.presets import impairments

    values: dict[str, object] = {"preset": args.preset}
    parsers = {"delay": ("delay_ms", model.parse_duration_ms),
               "jitter": ("jitter_ms", model.parse_duration_ms),
               "loss": ("loss_pct", model.parse_percent),
               "gemodel": ("gemodel", model.parse_gemodel),
               "rate": ("rate_kbit", model.parse_rate_kbit),
               "duplicate": ("duplicate_pct", model.parse_percent),
               "reorder": ("reorder_pct", model.parse_percent)}
    for option, (name, parse) in parsers.items():
        raw = getattr(args, option)
        if raw is not None:
            try:
                values[name] = parse(raw)
            except ValueError as exc:
                raise ValueError(f"--{option}: {exc}") from None
    for name in ("distribution", "seed", "limit_packets"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.keep_order is not None:
        values["keep_order"] = args.keep_order
    spec = model.ImpairmentSpec(**values)  # type: ignore[arg-type]  # checked by __init__
    return spec.resolve(impairments())


def _choose_link_backend(args: argparse.Namespace) -> None:
    """--link-backend overrides the topology's `link_backend`; the lab (perhaps in
    the supervisor process) reads it from the environment."""
    if getattr(args, "link_backend", None):
        from harness.link.selection import ENV_OVERRIDE

        os.environ[ENV_OVERRIDE] = args.link_backend


def _lab_option(parser: argparse.ArgumentParser) -> None:
    """--lab, the same for every verb that acts on a running lab."""
    parser.add_argument("--lab", metavar="ID",
                        help="the lab to act on, by its id (callwall status); needed only "
                             "when several labs run")


def _link_backend_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--link-backend", choices=("auto", "netem", "userspace"),
                        help="how to emulate the topology's link impairments (default: the "
                             "topology's link_backend, else probe: netem if the kernel has "
                             "it, else the userspace daemon)")


def cmd_doctor(args: argparse.Namespace) -> int:
    from harness import doctor

    return doctor.main(as_json=args.json)


def _link_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    link = sub.add_parser("link", help="change the link impairments of a running lab")
    lsub = link.add_subparsers(required=True, metavar="ACTION")
    change = lsub.add_parser(
        "set", help="impair one link's direction(s) of a running lab, live",
        description="Set the impairment of the link between HOST-A and HOST-B on a running "
                    "lab: a preset (--preset), inline values, or a preset with some values "
                    "overridden. Values not given are the preset's, or none.")
    change.add_argument("host_a", metavar="HOST-A")
    change.add_argument("host_b", metavar="HOST-B")
    _lab_option(change)
    change.add_argument("--direction", choices=("a-b", "b-a", "both"), default="both")
    change.add_argument("--preset", help="a preset of topologies/presets/link-presets.yaml")
    change.add_argument("--clear", action="store_true", help="remove the impairment")
    change.add_argument("--delay", help="one-way delay, e.g. 50ms")
    change.add_argument("--jitter", help="jitter (std for normal), e.g. 5ms")
    change.add_argument("--distribution", choices=("uniform", "normal", "pareto",
                                                   "paretonormal"))
    order = change.add_mutually_exclusive_group()
    order.add_argument("--keep-order", dest="keep_order", action="store_true", default=None)
    order.add_argument("--allow-reorder", dest="keep_order", action="store_false")
    change.add_argument("--loss", help="random loss, e.g. 1%%")
    change.add_argument("--gemodel", help="Gilbert-Elliott loss P,R[,BAD[,GOOD]] in %%, "
                        "e.g. 1%%,25%%")
    change.add_argument("--rate", help="rate limit, e.g. 10mbit")
    change.add_argument("--duplicate", help="duplicate share, e.g. 0.5%%")
    change.add_argument("--reorder", help="share of packets sent ahead, e.g. 1%%")
    change.add_argument("--limit", dest="limit_packets", type=int, help="queue limit (packets)")
    change.add_argument("--seed", type=int)
    change.set_defaults(handler=cmd_link_set)
    doctor = sub.add_parser("doctor", help="probe the kernel and userland, name the backends")
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(handler=cmd_doctor)


# ---------------------------------------------------------------- arguments

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callwall", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    _lab_commands(sub)
    _policy_commands(sub)
    run = sub.add_parser("run", help="place one call and print its result")
    run.add_argument("-t", "--topology", default=paths.DEFAULT_TOPOLOGY)
    run.add_argument("-p", "--policy", default="baseline")
    run.add_argument("-s", "--strategy", default="direct", choices=strategies())
    run.add_argument("--seconds", type=float, default=6.0, help="media seconds (default 6)")
    run.add_argument("--setup-timeout", type=float, default=15.0)
    run.add_argument("--json", action="store_true", help="print the record as JSON")
    run.add_argument("--no-audio", action="store_true",
                     help="do not record received audio (no WAV, no PESQ)")
    run.add_argument("--no-pcap", action="store_true", help="no pcap of the censor")
    _link_backend_option(run)
    run.add_argument("--profile", default="webrtc", choices=profiles(),
                     help="call profile (harness/calls): webrtc (default), signal-like, "
                          "whatsapp-like, telegram-like; app profiles take strategy direct")
    _link_profile_option(run)
    run.set_defaults(handler=cmd_run)
    _demo_command(sub)
    again = sub.add_parser(
        "reproduce", help="place each cell's call N times under a policy and sum up what "
                          "the reports compare (set-ups, MOS, PESQ, text, deciding rules)")
    again.add_argument("policy")
    again.add_argument("-t", "--topology", default=paths.DEFAULT_TOPOLOGY)
    again.add_argument("--calls", type=int, default=10, help="calls per cell (default 10)")
    again.add_argument("--cell", action="append", default=[], metavar="PROFILE:STRATEGY",
                       help="a cell to place (repeatable; default: the policy's direct cells)")
    again.add_argument("--seconds", type=float, default=8.0, help="media seconds (default 8)")
    _link_profile_option(again)
    again.set_defaults(handler=cmd_reproduce)
    _report_command(sub)
    _link_commands(sub)
    validate = sub.add_parser("validate", help="check topology, preset and policy files")
    validate.add_argument("files", nargs="*", metavar="FILE",
                          help="spec files (default: every shipped topology, the link presets "
                               "and every shipped policy)")
    validate.set_defaults(handler=cmd_validate)
    _list_command(sub)
    return parser


def _lab_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="bring a lab up and leave it running")
    up.add_argument("topology", nargs="?", default=paths.DEFAULT_TOPOLOGY)
    up.add_argument("--policy", default="baseline")
    _link_backend_option(up)
    up.set_defaults(handler=cmd_up)
    run_in = sub.add_parser("exec", help="run a program inside a host of a running lab")
    run_in.add_argument("host", metavar="HOST", help="a host of the lab's topology")
    run_in.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD",
                        help="the program and its arguments")
    _lab_option(run_in)
    run_in.set_defaults(handler=cmd_exec)
    down = sub.add_parser("down", help="remove a running lab")
    _lab_option(down)
    down.set_defaults(handler=cmd_down)
    sub.add_parser("status", help="list labs").set_defaults(handler=cmd_status)
    sub.add_parser("clean", help="remove labs whose owner died").set_defaults(handler=cmd_clean)


def _list_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = sub.add_parser("list", help="the shipped policies and topologies, the call "
                                          "profiles and strategies: one line each")
    listing.add_argument("kind", choices=LIST_KINDS)
    listing.set_defaults(handler=cmd_list)


def _demo_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo", help="a scripted demonstration for a class: one call, the censor changes "
                     "under it, a live page shows and plays each phase",
        description="Run a demo script (scenarios/demos/*.yaml) on a lab of its own: print a "
                    "local URL and one line per phase; write results/<run>/demo/ (demo.html, "
                    "timeline.png, a WAV per phase, handout.md). Exit 0 when every phase "
                    "showed what the script declares, 1 when one did not, 3 when the demo "
                    "could not run to its end.")
    demo.add_argument("script", nargs="?", default=DEFAULT_DEMO,
                      help=f"a script's name in scenarios/demos or a file (default "
                           f"{DEFAULT_DEMO})")
    demo.add_argument("--speed", type=float, default=1.0,
                      help="make the phases this many times shorter (1 to 10; a phase that "
                           "places a call still lasts the call's setup timeout)")
    demo.add_argument("--no-browser", action="store_true",
                      help="do not open a browser, and exit when the demo ends (for CI)")
    demo.add_argument("--port", type=int, default=0,
                      help="the live page's port on 127.0.0.1 (default: any free port)")
    _link_backend_option(demo)
    demo.set_defaults(handler=cmd_demo)


def _report_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser("report", help="write a run's HTML report, or compare two runs")
    report.add_argument("run", nargs="?", default=str(paths.RESULTS / "latest"),
                        help="a results/<run> directory (default: results/latest)")
    report.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), type=Path,
                        help="compare two runs; exit 1 on a regression")
    report.add_argument("--mos-threshold", type=float, default=0.5,
                        help="MOS drop that counts as a regression (default 0.5)")
    report.add_argument("--html", type=Path, help="where to write the comparison page")
    report.add_argument("--merge", nargs="+", metavar="RUN", type=Path,
                        help="merge the runs of a matrix's shards (make scenarios SHARD=k/N) "
                             "into one run: results.json, junit.xml, report.html; refuses "
                             "runs of different matrices or commits, overlapping shards and "
                             "missing cells, and says which")
    report.add_argument("--out", type=Path, metavar="DIR",
                        help="with --merge: the merged run's directory, new or empty "
                             "(default: a new results/<run>, and results/latest)")
    report.add_argument("--allow-partial", action="store_true",
                        help="with --merge: merge even where cells are missing (the merged "
                             "results.json lists them under 'partial')")
    report.set_defaults(handler=cmd_report)


def _policy_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = sub.add_parser("policy", help="show or apply censor policies")
    psub = policy.add_subparsers(required=True, metavar="ACTION")
    apply = psub.add_parser("apply", help="swap the censor policy of a running lab")
    apply.add_argument("policy", metavar="POLICY", help="a shipped policy's name or a file")
    _lab_option(apply)
    apply.set_defaults(handler=cmd_policy_apply)
    show = psub.add_parser("show", help="print a policy's compiled ruleset")
    show.add_argument("policy", metavar="POLICY", help="a shipped policy's name or a file")
    show.add_argument("-t", "--topology", default=paths.DEFAULT_TOPOLOGY)
    show.set_defaults(handler=cmd_policy_show)


if __name__ == "__main__":
    sys.exit(main())
