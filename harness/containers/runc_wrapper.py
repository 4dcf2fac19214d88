"""A runc wrapper that drops CAP_SYS_RESOURCE from every container it creates.

Some virtual machines (this project's CI among them) run without
CAP_SYS_RESOURCE in their bounding set, and `docker run --privileged` asks runc
for every capability: runc then fails with "operation not permitted". The
private dockerd (harness/containers/engine.py) registers a small shell shim
that execs `python3 -I this-file RUNC ARGS...` as its default runtime; this
strips the capability from the OCI bundle's config.json (`runc create/run
--bundle`) or the process spec (`runc exec --process`) and execs the real runc.

Standard library only: it runs under the system Python, isolated (-I).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

DROPPED = "CAP_SYS_RESOURCE"


def spec_file(argv: list[str]) -> Path | None:
    """The OCI file runc will read in this invocation: the bundle's config.json
    or an exec's process.json; None for other subcommands."""
    found: Path | None = None
    previous = ""
    for arg in argv:
        if previous in ("--bundle", "-b"):
            found = Path(arg) / "config.json"
        elif previous in ("--process", "-p"):
            found = Path(arg)
        elif arg.startswith("--bundle="):
            found = Path(arg.split("=", 1)[1]) / "config.json"
        elif arg.startswith("--process="):
            found = Path(arg.split("=", 1)[1])
        previous = arg
    return found


def strip_capability(spec: dict[str, Any], capability: str = DROPPED) -> bool:
    """Remove `capability` from every capability set of a config.json
    (`process.capabilities`) or process.json (`capabilities`); True if changed."""
    process = spec.get("process")
    holder = process if isinstance(process, dict) else spec
    sets = holder.get("capabilities")
    if not isinstance(sets, dict):
        return False
    changed = False
    for name, caps in sets.items():
        if isinstance(caps, list) and capability in caps:
            sets[name] = [cap for cap in caps if cap != capability]
            changed = True
    return changed


def rewrite(path: Path) -> None:
    """Strip the capability from the spec file at `path`, atomically."""
    spec = json.loads(path.read_text())
    if strip_capability(spec):
        tmp = path.with_name(path.name + ".nosysres")
        tmp.write_text(json.dumps(spec))
        os.replace(tmp, path)


def main(argv: list[str]) -> None:
    """argv: the real runc's path, then runc's own arguments."""
    runc, args = argv[0], argv[1:]
    path = spec_file(args)
    if path is not None and path.is_file():
        rewrite(path)
    os.execv(runc, [runc, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
