"""A rule's schedule as nft conditions.

`after_s` becomes `meta time >= <apply time + after_s>` (seconds since the
epoch: nft reads a bare number as UTC seconds, so the result does not depend
on the censor's time zone). Periodic `on_s`/`off_s` windows become a
`meta hour` set of time-of-day intervals (seconds since midnight UTC), which
the kernel matches on every packet; since the period divides a day (the spec
insists), the windows repeat exactly, day after day.
"""

from __future__ import annotations

from harness.spec.policy import DAY_S, Schedule


def schedule_conditions(schedule: Schedule | None, now: float) -> list[str]:
    if schedule is None:
        return []
    start = int(now) + schedule.after_s
    conditions = [f"meta time >= {start}"] if schedule.after_s else []
    if schedule.on_s is not None and schedule.off_s is not None:
        conditions.append(f"meta hour {{ {', '.join(_windows(start, schedule))} }}")
    return conditions


def _windows(start: int, schedule: Schedule) -> list[str]:
    assert schedule.on_s is not None and schedule.off_s is not None
    period = schedule.on_s + schedule.off_s
    first = start % period  # a day holds a whole number of periods
    intervals: list[tuple[int, int]] = []
    for begin in range(first, first + DAY_S, period):
        end = begin + schedule.on_s - 1
        for lo, hi in _split_at_midnight(begin % DAY_S, end % DAY_S):
            intervals.append((lo, hi))
    return [f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in _merged(intervals)]


def _split_at_midnight(lo: int, hi: int) -> list[tuple[int, int]]:
    return [(lo, hi)] if lo <= hi else [(lo, DAY_S - 1), (0, hi)]


def _merged(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    result: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals):
        if result and lo <= result[-1][1] + 1:
            result[-1] = (result[-1][0], max(hi, result[-1][1]))
        else:
            result.append((lo, hi))
    return result


def describe_schedule(schedule: Schedule | None) -> str:
    if schedule is None:
        return ""
    parts = []
    if schedule.after_s:
        parts.append(f"from {schedule.after_s}s after the policy is applied")
    if schedule.on_s is not None:
        parts.append(f"on {schedule.on_s}s / off {schedule.off_s}s")
    return ", ".join(parts)
