"""The DevTools-protocol client (harness.calls.browser.cdp) and the call
page's server: framing, replies matched by id, events, errors and a closed
pipe against a scripted browser on real pipes; then the real Chromium, where
it is installed (no root needed): a command over its pipe, what it costs,
and that stopping it leaves none of its processes."""

from __future__ import annotations

import asyncio
import json
import os
import time
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from harness.calls.browser.cdp import (
    CdpClosed,
    CdpError,
    CdpPipe,
    encode,
    reply_of,
    split_frames,
)
from harness.calls.browser.chromium import (
    ChromiumSetup,
    ResourceUse,
    chromium_argv,
    chromium_binary,
    launch,
    process_tree,
    stop,
)
from harness.calls.browser.server import ENTRY, page_files, response, serve_page

# A scripted browser: gets each command, answers with what it returns (a
# list of messages to write back, in order).
Script = Callable[[dict[str, Any]], list[dict[str, Any]]]


def test_frames_round_trip_and_split_across_reads() -> None:
    one, two = {"id": 1, "result": {"a": "é"}}, {"method": "X.y", "params": {}}
    data = encode(one) + encode(two)
    assert data.count(b"\0") == 2
    cut = len(encode(one)) + 5
    first, rest = split_frames(data[:cut])
    assert first == [one] and rest == data[len(encode(one)):cut]
    second, left = split_frames(rest + data[cut:])
    assert second == [two] and left == b""


def test_a_frame_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        split_frames(b"[1,2]\0")
    with pytest.raises(ValueError):
        split_frames(b"{not json}\0")
    assert split_frames(b"\0\0") == ([], b"")


def test_an_error_reply_raises_with_the_browsers_message() -> None:
    assert reply_of({"id": 3, "result": {"x": 1}}, "A.b").result == {"x": 1}
    with pytest.raises(CdpError, match=r"Runtime.evaluate: Cannot find context \(ctx 9\)"):
        reply_of({"id": 3, "error": {"code": -32000, "message": "Cannot find context",
                                     "data": "ctx 9"}}, "Runtime.evaluate")


def _with_browser(script: Script, test: Callable[[CdpPipe], Awaitable[None]]) -> None:
    """Run `test` against a scripted browser on two real pipes."""
    commands_r, commands_w = os.pipe()
    replies_r, replies_w = os.pipe()

    async def browser() -> None:
        loop = asyncio.get_running_loop()
        buffer = b""
        while True:
            chunk = await loop.run_in_executor(None, os.read, commands_r, 65536)
            if not chunk:
                return
            messages, buffer = split_frames(buffer + chunk)
            for message in messages:
                for out in script(message):
                    if out.get("close"):
                        os.close(replies_w)
                        return
                    os.write(replies_w, encode(out))

    async def main() -> None:
        cdp = CdpPipe(replies_r, commands_w)
        cdp.start()
        fake = asyncio.create_task(browser())
        try:
            await asyncio.wait_for(test(cdp), 10)
        finally:
            await cdp.close()
            os.close(commands_r)
            fake.cancel()

    asyncio.run(main())


def test_replies_are_matched_by_id_and_events_reach_their_handlers() -> None:
    held: list[dict[str, Any]] = []

    def script(message: dict[str, Any]) -> list[dict[str, Any]]:
        if message["method"] == "Slow.first":
            held.append(message)
            return [{"method": "Runtime.bindingCalled", "sessionId": "S1",
                     "params": {"name": "cwEmit", "payload": "{}"}}]
        # The second command is answered first, then the held one.
        return [{"id": message["id"], "result": {"echo": message["params"]}},
                *({"id": h["id"], "result": {"first": True}} for h in held)]

    async def test(cdp: CdpPipe) -> None:
        seen: list[tuple[dict[str, Any], str | None]] = []
        cdp.on("Runtime.bindingCalled", lambda params, session: seen.append((params, session)))
        first = asyncio.create_task(cdp.call("Slow.first", session="S1"))
        await asyncio.sleep(0.1)
        assert await cdp.call("Fast.second", {"n": 2}) == {"echo": {"n": 2}}
        assert await first == {"first": True}
        assert seen == [({"name": "cwEmit", "payload": "{}"}, "S1")]

    _with_browser(script, test)


def test_a_command_without_reply_times_out_and_a_closed_pipe_fails_the_rest() -> None:
    def script(message: dict[str, Any]) -> list[dict[str, Any]]:
        if message["method"] == "Never.answered":
            return []
        return [{"close": True}]

    async def test(cdp: CdpPipe) -> None:
        with pytest.raises(CdpError, match="no reply within 0.2 s"):
            await cdp.call("Never.answered", timeout_s=0.2)
        with pytest.raises(CdpClosed, match="closed the DevTools pipe"):
            await cdp.call("Browser.close")
        assert cdp.closed is not None
        with pytest.raises(CdpClosed):
            await cdp.call("Anything.after")

    _with_browser(script, test)


def test_the_page_server_serves_the_page_and_nothing_else() -> None:
    files = page_files()
    assert set(files) == {"/call.html", "/call.js"}
    ok = response(files, b"GET /call.js?x=1 HTTP/1.1\r\n")
    assert ok.startswith(b"HTTP/1.0 200 OK\r\n") and b"text/javascript" in ok
    assert ok.endswith(files["/call.js"])
    assert response(files, b"GET /../../etc/passwd HTTP/1.1\r\n").startswith(b"HTTP/1.0 404")
    assert response(files, b"POST /call.js HTTP/1.1\r\n").startswith(b"HTTP/1.0 405")
    assert b"window.cwEmit" in files["/call.js"] and b"call.js" in files["/call.html"]

    async def fetch() -> bytes:
        page = await serve_page("127.0.0.1")
        try:
            host_port = page.url.split("/")[2]
            host, port = host_port.split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(f"GET /{ENTRY} HTTP/1.1\r\nHost: {host_port}\r\n\r\n".encode())
            body = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return body
        finally:
            await page.close()

    assert asyncio.run(fetch()).endswith(files["/call.html"])


def test_the_command_line_holds_the_flags_a_call_needs(tmp_path: Path) -> None:
    setup = ChromiumSetup(binary=Path("/usr/lib/chromium/chromium"), profile_dir=tmp_path / "p",
                          fake_audio=tmp_path / "ref.wav", resolver_exclude=("198.18.1.2",),
                          spki_pins=("AAAA=",))
    argv = chromium_argv(setup)
    assert argv[0] == "/usr/lib/chromium/chromium" and argv[-1] == "about:blank"
    for flag in ("--headless=new", "--remote-debugging-pipe", "--no-sandbox",
                 f"--user-data-dir={tmp_path / 'p'}", "--use-fake-device-for-media-stream",
                 "--use-fake-ui-for-media-stream",
                 f"--use-file-for-fake-audio-capture={tmp_path / 'ref.wav'}",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE 198.18.1.2",
                 "--ignore-certificate-errors-spki-list=AAAA=",
                 "--disable-features=WebRtcHideLocalIpsWithMdns,Translate,MediaRouter,"
                 "OptimizationHints,DialMediaRouteProvider"):
        assert flag in argv, flag
    plain = chromium_argv(ChromiumSetup(binary=Path("c"), profile_dir=tmp_path,
                                        fake_audio=tmp_path / "a.wav"))
    assert not any(a.startswith("--ignore-certificate-errors-spki-list") for a in plain)


# ------------------------------------------------------------------ the real browser

needs_chromium = pytest.mark.skipif(chromium_binary() is None,
                                    reason="needs chromium (Debian package chromium)")


def _silence(path: Path) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(b"\0\0" * 48000)
    return path


@needs_chromium
def test_real_chromium_answers_over_its_pipe_and_leaves_nothing(tmp_path: Path) -> None:
    binary = chromium_binary()
    assert binary is not None
    setup = ChromiumSetup(binary=binary, profile_dir=tmp_path / "profile",
                          fake_audio=_silence(tmp_path / "ref.wav"))
    launched = launch(chromium_argv(setup), tmp_path / "chromium.log")
    use = ResourceUse()
    tree: list[int] = []
    try:
        async def talk() -> dict[str, Any]:
            cdp = CdpPipe(launched.read_fd, launched.write_fd)
            cdp.start()
            try:
                version = await cdp.call("Browser.getVersion", timeout_s=30)
                targets = await cdp.call("Target.getTargets")
                assert any(t["type"] == "page" for t in targets["targetInfos"])
                tree.extend(process_tree(launched.process.pid))
                use.sample(launched.process.pid)
                return version
            finally:
                await cdp.close()

        version = asyncio.run(talk())
        assert "Chrome/" in version["product"], json.dumps(version)
        assert use.processes_peak >= 2 and use.rss_peak_mb > 20 and use.cpu_s > 0
    finally:
        stop(launched.process)
    started = list(use.cpu_ticks)  # (pid, kernel start time) of every process sampled
    assert launched.process.pid in tree and len(started) >= 2
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(*p) for p in started):
        time.sleep(0.1)
    left = [p for p in started if _alive(*p)]
    assert left == [], f"chromium processes left after stop: {left}"


def _alive(pid: int, start_ticks: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0] not in ("Z", "X") and int(fields[19]) == start_ticks
