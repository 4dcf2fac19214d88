"""The `callwall` command.

  callwall up TOPOLOGY [--policy P]      bring a lab up and leave it running
  callwall exec HOST -- CMD...           run a program inside a lab host
  callwall policy apply POLICY           swap the censor's policy (atomic)
  callwall policy show POLICY            print the compiled ruleset, explained
  callwall down                          remove the lab
  callwall status                        list labs
  callwall clean                         remove labs whose owner died
  callwall run -t T -p P -s S            place one call and print its result
  callwall validate FILE...              check topology and policy files

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
from harness.censor.compiler import CompileError, bindings_for, compile_policy
from harness.clients.call import CallSettings
from harness.lab.capabilities import missing_lab_capabilities
from harness.lab.environment import describe_environment
from harness.lab.lab import Lab, remove_stale_labs
from harness.lab.registry import OwnedProcess, Registry, list_runs, terminate
from harness.lab.signals import StopRequested, install_stop_handlers
from harness.report.compare import compare_runs, render_text, write_comparison_html
from harness.report.html import ReportError, resolve_run_dir, write_report
from harness.report.results import format_table, new_results_dir, point_latest, write_results
from harness.session import judged_call
from harness.spec.policy import STRATEGIES, load_policy
from harness.spec.schema import SpecError
from harness.spec.topology import load_topology

EXIT_BAD_INPUT = 2
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
    topology_file = paths.topology_path(args.topology)
    topology = load_topology(topology_file)
    policy_file = paths.policy_path(args.policy)
    load_policy(policy_file, topology.sets.keys())
    _require_lab_capabilities()
    argv = [sys.executable, "-m", "harness.lab.supervisor", "--topology", str(topology_file),
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
    lab = Lab.attach(_select_lab(args.lab))
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise CliError("nothing to run: callwall exec HOST -- CMD...", EXIT_BAD_INPUT)
    argv = lab.host(args.host).argv(command)
    os.execvp(argv[0], argv)
    return 1  # not reached


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
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    for file in args.files:
        path = Path(file)
        if path.parent.name == "topologies":
            load_topology(path)
        else:
            load_policy(path)
        print(f"{path}: ok")
    return 0


# ---------------------------------------------------------------- one call

def cmd_run(args: argparse.Namespace) -> int:
    topology_file = paths.topology_path(args.topology)
    topology = load_topology(topology_file)
    policy = load_policy(paths.policy_path(args.policy), topology.sets.keys())
    _require_lab_capabilities()
    install_stop_handlers()
    settings = CallSettings(media_seconds=args.seconds, setup_timeout_s=args.setup_timeout,
                            record_audio=not args.no_audio, capture_pcap=not args.no_pcap)
    with Lab.create(topology_file) as lab:
        lab.up(progress=True)
        results_dir = new_results_dir(paths.RESULTS, lab.run_id)
        print(f"[{lab.run_id}] calling with {args.strategy} under {policy.name}",
              file=sys.stderr)
        record = judged_call(lab, policy, args.strategy, results_dir / "calls" / "call-1",
                             settings)
    write_results(results_dir, [record], {"run_id": record.run_id, "kind": "run",
                                          "topology": topology.name,
                                          "environment": describe_environment()})
    point_latest(results_dir)
    write_report(results_dir)
    print(json.dumps(record.to_dict(), indent=2) if args.json else format_table([record]))
    print(f"results: {results_dir / 'results.json'}, report: {results_dir / 'report.html'}",
          file=sys.stderr)
    return 0 if record.connected else 1


def cmd_report(args: argparse.Namespace) -> int:
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


def _require_lab_capabilities() -> None:
    """Labs need root and a few system packages: say which are missing, up front."""
    missing = missing_lab_capabilities()
    if missing:
        raise CliError("cannot build a lab here; missing: " + "; ".join(missing)
                       + " (make install sets up the packages)")


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
    run.add_argument("-s", "--strategy", default="direct", choices=STRATEGIES)
    run.add_argument("--seconds", type=float, default=6.0, help="media seconds (default 6)")
    run.add_argument("--setup-timeout", type=float, default=15.0)
    run.add_argument("--json", action="store_true", help="print the record as JSON")
    run.add_argument("--no-audio", action="store_true",
                     help="do not record received audio (no WAV, no PESQ)")
    run.add_argument("--no-pcap", action="store_true", help="no pcap of the censor")
    run.set_defaults(handler=cmd_run)
    _report_command(sub)
    validate = sub.add_parser("validate", help="check topology and policy files")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(handler=cmd_validate)
    return parser


def _lab_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="bring a lab up and leave it running")
    up.add_argument("topology", nargs="?", default=paths.DEFAULT_TOPOLOGY)
    up.add_argument("--policy", default="baseline")
    up.set_defaults(handler=cmd_up)
    run_in = sub.add_parser("exec", help="run a program inside a lab host")
    run_in.add_argument("host")
    run_in.add_argument("command", nargs=argparse.REMAINDER)
    run_in.add_argument("--lab", help="lab id, when several run")
    run_in.set_defaults(handler=cmd_exec)
    down = sub.add_parser("down", help="remove the lab")
    down.add_argument("--lab")
    down.set_defaults(handler=cmd_down)
    sub.add_parser("status", help="list labs").set_defaults(handler=cmd_status)
    sub.add_parser("clean", help="remove labs whose owner died").set_defaults(handler=cmd_clean)


def _report_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser("report", help="write a run's HTML report, or compare two runs")
    report.add_argument("run", nargs="?", default=str(paths.RESULTS / "latest"),
                        help="a results/<run> directory (default: results/latest)")
    report.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), type=Path,
                        help="compare two runs; exit 1 on a regression")
    report.add_argument("--mos-threshold", type=float, default=0.5,
                        help="MOS drop that counts as a regression (default 0.5)")
    report.add_argument("--html", type=Path, help="where to write the comparison page")
    report.set_defaults(handler=cmd_report)


def _policy_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = sub.add_parser("policy", help="show or apply censor policies")
    psub = policy.add_subparsers(required=True, metavar="ACTION")
    apply = psub.add_parser("apply", help="swap the running lab's censor policy")
    apply.add_argument("policy")
    apply.add_argument("--lab")
    apply.set_defaults(handler=cmd_policy_apply)
    show = psub.add_parser("show", help="print a policy's compiled ruleset")
    show.add_argument("policy")
    show.add_argument("-t", "--topology", default=paths.DEFAULT_TOPOLOGY)
    show.set_defaults(handler=cmd_policy_show)


if __name__ == "__main__":
    sys.exit(main())
