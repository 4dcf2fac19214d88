"""What a demo leaves in results/<run>/demo/: the annotated timeline
(timeline.png), a WAV per phase (audio/), demo.html (the whole demo, offline:
the page with the last state, the audio as data: URIs and the timeline
inline, and a replay), handout.md (per phase: what happened, the figures,
the sources) and demo.json (the state the page shows)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from harness.demo.page import render_page
from harness.demo.sources import Source
from harness.demo.view import CallFigures, DemoView, PhaseView

PLOTS = (("loss_pct", "loss (%)"), ("bitrate_kbps", "bitrate (kbit/s)"),
         ("jitter_ms", "jitter (ms)"), ("mos", "MOS (E-model)"))
COLORS = ("#1f5fbf", "#e07b00", "#2e8b57", "#8e44ad", "#c0392b")


def write_outputs(view: DemoView, out_dir: Path, sources: dict[str, Source]) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "demo.json", "png": out_dir / "timeline.png",
             "html": out_dir / "demo.html", "handout": out_dir / "handout.md"}
    files["json"].write_text(json.dumps(view.to_dict(), indent=1) + "\n")
    timeline_png(view, files["png"])
    files["html"].write_text(offline_page(view, out_dir / "audio", files["png"]))
    files["handout"].write_text(handout(view, sources))
    return files


def data_uri(path: Path, kind: str) -> str:
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def offline_page(view: DemoView, audio_dir: Path, png: Path | None) -> str:
    audio = {path.name: data_uri(path, "audio/wav") for path in sorted(audio_dir.glob("*.wav"))}
    image = data_uri(png, "image/png") if png is not None and png.exists() else None
    return render_page(json.dumps(view.to_dict()), live=False, audio=audio, title=view.title,
                       timeline_png=image)


def timeline_png(view: DemoView, path: Path) -> Path:
    """The per-second figures of every call, the phases shaded and titled,
    and each phase's outcome written under its span."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(len(PLOTS), 1, figsize=(12, 9), sharex=True)
    spans = _spans(view)
    for ax, (key, label) in zip(axes, PLOTS, strict=True):
        for index, (start, end) in enumerate(spans):
            if index % 2:
                ax.axvspan(start, end, color="#1f5fbf", alpha=0.06, lw=0)
            ax.axvline(start, color="#5d6675", ls=":", lw=1)
        for number, call in enumerate(view.calls.values()):
            color = COLORS[number % len(COLORS)]
            for rows, style, heard in ((call.to_callee, "-", "callee"),
                                       (call.to_caller, "--", "caller")):
                points = [(r["t"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, style, color=color, lw=1.6,
                            label=f"{call.label}, heard by the {heard}")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[-1].set_ylim(1.0, 4.6)
    axes[0].set_ylim(bottom=0)
    axes[-1].set_xlabel("seconds since the call connected")
    for index, ((start, end), phase) in enumerate(zip(spans, view.phases, strict=True)):
        axes[0].text((start + end) / 2, 1.02, f"{index + 1}. {phase.id}", ha="center",
                     va="bottom", transform=axes[0].get_xaxis_transform(), fontsize=9)
        axes[-1].text((start + end) / 2, 1.15, _outcome(phase), ha="center", va="bottom",
                      fontsize=8, color="#1a7f37" if phase.passed else "#c62828")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(view.title, fontsize=12)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _spans(view: DemoView) -> list[tuple[float, float]]:
    spans, t = [], 0.0
    for phase in view.phases:
        start = phase.start_t if phase.start_t is not None else t
        t = phase.end_t if phase.end_t is not None else start + phase.planned_s
        spans.append((start, t))
    return spans


def _outcome(phase: PhaseView) -> str:
    parts = []
    for name, figures in phase.figures.items():
        who = "call" if name == "call" else "new call"
        parts.append(f"{who}: " + ("no media" if figures.media is False
                                   else f"MOS {_num(figures.mos)}"))
    return "\n".join(parts)


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def handout(view: DemoView, sources: dict[str, Source]) -> str:
    """A short Markdown handout: per phase what was done, what was measured,
    whether it showed what the script declares, and the sources."""
    lines = [f"# {view.title}", "", " ".join(view.description.split()), "",
             f"A `{view.profile}` call ({view.strategy}) on the `{view.topology}` topology"
             + (f", phases {view.speed:g} times shorter than scripted" if view.speed != 1 else "")
             + ". MOS is the E-model's (ITU-T G.107) on the loss, jitter and round trip"
             " measured each second, for the worse direction; PESQ-WB (ITU-T P.862.2) compares"
             " what the callee heard with the speech that was sent.", ""]
    cited: list[str] = []
    for phase in view.phases:
        lines += _phase_section(phase)
        cited += [s.id for s in phase.sources if s.id not in cited]
    verdict = ("every phase showed what the script declares" if view.passed
               else f"not every phase showed what the script declares ({view.status})")
    lines += [f"**Result:** {verdict}.", "", "## Sources", ""]
    for source_id in cited:
        source = sources.get(source_id)
        if source is None:
            lines.append(f"- {source_id}: not in docs/sources.md")
            continue
        where = f" <{source.url}>" if source.url else ""
        date = f" ({source.date})" if source.date else ""
        lines.append(f"- {source.id} — {source.title}{date}.{where}")
    lines.append("")
    return "\n".join(lines)


def _phase_section(phase: PhaseView) -> list[str]:
    change = (f"The censor loaded policy `{phase.policy}`" if phase.loads_policy
              else f"The censor kept policy `{phase.policy}`")
    if phase.change_s is not None:
        change += f" ({phase.change_s:.2f} s, one nft transaction)"
    actions = [change]
    if phase.hang_up:
        actions.append("the running call was hung up")
    if phase.attempt:
        actions.append(f"a new call was placed ({phase.attempt})")
    lines = [f"## {phase.index + 1}. {phase.title}", "", "; ".join(actions) + ".", ""]
    if phase.change_error:
        lines += [f"**The policy change failed:** {phase.change_error}", ""]
    lines += [" ".join(phase.explain.split()) + " (" + ", ".join(s.id for s in phase.sources)
              + ")", ""]
    for name, figures in phase.figures.items():
        lines.append(f"- {'The running call' if name == 'call' else 'The new call'}: "
                     + _figures_text(figures))
    for check in phase.checks:
        mark = ("yes, as the rare outcome" if check.rare else "yes") if check.ok else "NO"
        lines.append(f"- Expected of the {'running' if check.subject == 'call' else 'new'} "
                     f"call: {check.expected}. Observed: {check.observed}. As declared: {mark}.")
    lines.append("")
    return lines


def _figures_text(f: CallFigures) -> str:
    if f.media is False:
        text = "no audio reached either side"
        return text + (f" (it failed: {f.failure})" if f.failure else "") + "."
    parts = [f"MOS {_num(f.mos)}", f"loss {_num(f.loss_pct, 1)} %",
             f"jitter {_num(f.jitter_ms, 1)} ms", f"{_num(f.bitrate_kbps, 1)} kbit/s received"]
    if f.pesq is not None:
        parts.append(f"PESQ-WB {f.pesq:.2f}")
    text = ", ".join(parts) + f" over {f.seconds} s"
    if f.failure:
        text += f"; it failed: {f.failure}"
    if f.note:
        text += f" ({f.note})"
    if f.audio:
        text += f"; audio: audio/{f.audio}"
    return text + "."
