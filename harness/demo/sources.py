"""The entries of docs/sources.md a demo cites: id, title, address and date."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness import paths

HEADING = re.compile(r"^### (S[0-9]+) — (.+)$")
FIELD = re.compile(r"^- (URL|Date): (.+)$")


@dataclass(frozen=True)
class Source:
    id: str
    title: str
    url: str = ""
    date: str = ""


def sources_file() -> Path:
    return (paths.checkout_root() or paths.HOME) / "docs" / "sources.md"


def load_sources(path: Path | None = None) -> dict[str, Source]:
    """Every entry of docs/sources.md by id; empty when the file is not there
    (an installed wheel carries no docs/)."""
    path = path or sources_file()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    found: dict[str, Source] = {}
    current: dict[str, str] | None = None
    for line in lines:
        heading = HEADING.match(line)
        if heading:
            current = {"id": heading.group(1), "title": heading.group(2).strip()}
            found[current["id"]] = Source(**current)
            continue
        field = FIELD.match(line)
        if field and current is not None:
            current[field.group(1).lower()] = field.group(2).strip()
            found[current["id"]] = Source(**current)
    return found


def cited(ids: list[str], known: dict[str, Source]) -> list[Source]:
    """The cited entries, in the order cited; an id docs/sources.md lacks is
    kept with its id alone (the page says so rather than dropping it)."""
    return [known.get(i, Source(i, "(not in docs/sources.md)")) for i in ids]
