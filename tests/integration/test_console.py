"""The web console in a real browser (Debian's Chromium, headless, driven by Playwright)
against the real API, a real WHIP publisher and a real worker: log in with the keyboard,
create a meeting, switch transcription on, watch the captions of a spoken clip arrive under
the speaker's name, switch it off, rotate keys, download the transcript, and use it all at a
phone's width."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from fastapi.testclient import TestClient

from keys.audit import AuditEntry
from keys.types import KeyUse, Purpose
from pipeline import egress, services
from pipeline.api.app import create_app
from pipeline.api.console import CSP
from pipeline.audio.decode import decode_file
from pipeline.config import Settings
from pipeline.egress import EgressPolicy
from pipeline.errors import AuthenticationFailed
from pipeline.models import Tenant, TranscriptSegment
from pipeline.publish import PcmTrack, WhipPublisher
from pipeline.queue import use_broker
from pipeline.runtime import Runtime
from pipeline.sealing import seal_interim_transcript, seal_transcript
from pipeline.services import webhooks
from pipeline.store import schema
from pipeline.store.connection import as_str
from pipeline.store.segments import CAPTION_HISTORY
from tests.harness.api import serve_api
from tests.harness.processes import WorkerProcess
from tests.harness.redis import RedisServer

CHROMIUM = Path("/usr/bin/chromium")
CLIP = Path(__file__).resolve().parents[2] / "pipeline" / "demo_data" / "jfk.ogg"
SPEAKER = "Kennedy"

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="the console test needs the dev extra (playwright)"
)
from playwright.async_api import (  # noqa: E402
    BrowserContext,
    FilePayload,
    Page,
    Route,
    WebSocketRoute,
    async_playwright,
    expect,
)

STATIC = Path(__file__).resolve().parents[2] / "pipeline" / "api" / "console_static"


@pytest.fixture
def rt(env: dict[str, str]) -> Runtime:
    # the worker's database and home; the API's lifespan applies ice_hosts, so say loopback
    return Runtime.from_settings(
        Settings.from_env({**env, "SEALSCRIBE_ICE_HOSTS": "127.0.0.1"}), actor="test"
    )


async def tab_to(page: Page, element_id: str, limit: int = 60) -> None:
    """Press Tab until the element with ``element_id`` has the focus, as a keyboard user."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} is not reachable with Tab")


async def no_horizontal_scroll(page: Page) -> None:
    widths = await page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths}"


async def publish(base: str, token: str, meeting_id: str, pcm: bytes) -> None:
    pub = WhipPublisher(
        f"{base}/v1/meetings/{meeting_id}/whip", token, PcmTrack(pcm, speed=2.0), SPEAKER
    )
    await pub.start()
    try:
        assert isinstance(pub.track, PcmTrack)
        await asyncio.wait_for(pub.track.finished.wait(), 60)
    finally:
        await pub.stop()


@contextlib.asynccontextmanager
async def console_page(rt: Runtime) -> AsyncIterator[tuple[str, BrowserContext, Page]]:
    """The API served in this process and a Chromium page for it: (base URL, context, page).
    A page error or a Content-Security-Policy violation fails the test when the block ends."""
    async with serve_api(rt) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = await browser.new_context(
                viewport={"width": 1280, "height": 900}, accept_downloads=True
            )
            page = await context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on(
                "console",
                lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
            )
            yield base, context, page
            assert not problems, problems
        finally:
            await browser.close()


async def log_in(page: Page, base: str, token: str) -> None:
    await page.goto(f"{base}/")
    await page.get_by_label("Tenant API token").fill(token)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#console")).to_be_visible()


async def transcribed(rt: Runtime, meeting_id: str, timeout: float = 60) -> int:
    """Waits for the worker to finish the meeting's audio; the transcript's segment count."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pending = rt.store.segments.pending_count(meeting_id)
        done = rt.store.segments.transcript_count(meeting_id)
        if pending == 0 and done > 0:
            return done
        if loop.time() > deadline:
            raise TimeoutError(f"{pending} segments still untranscribed after {timeout} s")
        await asyncio.sleep(0.2)


async def scenario(rt: Runtime, token: str, tenant_id: str, pcm: bytes) -> None:
    async with console_page(rt) as (base, context, page):
        await drive(page, context, rt, base, token, tenant_id, pcm)


async def drive(
    page: Page,
    context: BrowserContext,
    rt: Runtime,
    base: str,
    token: str,
    tenant_id: str,
    pcm: bytes,
) -> None:
    # captions go through a pass-through route, so the test can drop the connection
    sockets: list[WebSocketRoute] = []

    def pass_through(route: WebSocketRoute) -> None:
        route.connect_to_server()
        sockets.append(route)

    await page.route_web_socket(re.compile(r"/captions\?"), pass_through)
    response = await page.goto(f"{base}/")
    assert response is not None and response.ok
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp

    # a wrong token is refused with the API's own words
    await page.get_by_label("Tenant API token").fill("sst_not-a-real-token")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#error")).to_be_visible()
    await expect(page.locator("#error-text")).not_to_be_empty()
    await page.get_by_label("Tenant API token").fill("")

    # log in with the keyboard only
    await page.locator("body").focus()
    await tab_to(page, "token")
    await page.keyboard.type(token)
    await page.keyboard.press("Enter")
    await expect(page.locator("#console")).to_be_visible()
    await expect(page.locator("#tenant-id")).to_have_text(tenant_id)
    await expect(page.locator("#error")).to_be_hidden()
    assert await page.evaluate("sessionStorage.getItem('sealscribe.token')") == token
    assert await page.evaluate("localStorage.length") == 0
    assert await context.cookies() == []

    # a new meeting: transcription is OFF, said three ways
    await page.get_by_role("button", name="New meeting").click()
    switch = page.get_by_role("switch", name="Transcription")
    await expect(switch).to_be_visible()
    meeting_id = (await page.locator("#meeting-id").text_content()) or ""
    assert re.fullmatch(r"m_[0-9a-f]{16}", meeting_id), meeting_id
    await expect(switch).to_have_attribute("aria-checked", "false")
    await expect(switch).to_have_text("OFF")
    await expect(switch).to_have_class(re.compile(r"\boff\b"))
    assert not services.get_meeting(rt, meeting_id).transcription

    # switch it ON with the keyboard (Space)
    await tab_to(page, "transcription-switch")
    await page.keyboard.press("Space")
    await expect(switch).to_have_attribute("aria-checked", "true")
    await expect(switch).to_have_text("ON")
    await expect(switch).to_have_class(re.compile(r"\bon\b"))
    assert services.get_meeting(rt, meeting_id).transcription

    # a participant speaks: their caption arrives over the WebSocket, under their name
    await expect(page.locator("#captions-state")).to_have_text("live")
    publishing = asyncio.create_task(publish(base, token, meeting_id, pcm))
    caption = page.locator("#captions .caption").filter(has_text="country")
    await expect(caption).to_be_visible(timeout=60_000)
    await expect(caption.locator(".speaker")).to_have_text(SPEAKER)
    await publishing

    # every segment shows once (one line per utterance, whether or not interims came
    # first); a dropped connection resumes from the last cursor
    stored = await transcribed(rt, meeting_id)
    captions = page.locator("#captions .caption.final")
    await expect(captions).to_have_count(stored)
    utterances = await page.locator("#captions .caption").evaluate_all(
        "lines => lines.map(li => li.dataset.utterance)"
    )
    assert len(set(utterances)) == len(utterances), utterances
    last_cursor = await page.locator("#captions").get_attribute("data-cursor")
    assert last_cursor and re.fullmatch(r"\d+-\d+", last_cursor), last_cursor
    opened = len(sockets)
    await sockets[-1].close(code=1012, reason="service restart")  # the page's side drops
    for _ in range(200):
        if len(sockets) > opened:
            break
        await asyncio.sleep(0.05)
    assert len(sockets) == opened + 1, "the console did not reconnect"
    await expect(page.locator("#captions-state")).to_have_text("live")
    query = parse_qs(urlsplit(sockets[-1].url).query)
    assert query["cursor"] == [last_cursor]
    # the socket was opened with a single-use ticket; the token never went into a URL
    assert query["ticket"][0].startswith("ssc_") and "access_token" not in query
    assert not [s.url for s in sockets if token in s.url]
    assert len({parse_qs(urlsplit(s.url).query)["ticket"][0] for s in sockets}) == len(sockets)
    await page.wait_for_timeout(500)
    await expect(captions).to_have_count(stored)

    # and OFF again (Enter, the focus is still on the switch)
    assert await page.evaluate("document.activeElement.id") == "transcription-switch"
    await page.keyboard.press("Enter")
    await expect(switch).to_have_attribute("aria-checked", "false")
    await expect(switch).to_have_text("OFF")
    assert not services.get_meeting(rt, meeting_id).transcription

    # rotate the key: the version goes up by one
    version = int((await page.locator("#key-version").text_content()) or "0")
    await page.get_by_role("button", name="Rotate key").click()
    await expect(page.locator("#key-version")).to_have_text(str(version + 1))

    # the transcript as WebVTT, fetched with the bearer header and saved from a Blob
    await page.get_by_label("Format").select_option("vtt")
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download transcript").click()
    download = await download_info.value
    assert download.suggested_filename == f"{meeting_id}.vtt"
    vtt = Path(await download.path()).read_text()
    assert vtt.startswith("WEBVTT"), vtt[:40]
    assert "country" in vtt.lower()

    # consent: the speaker heard in the captions can be opted out
    consent = page.get_by_role("switch", name=f"Transcribe {SPEAKER}")
    await expect(consent).to_have_attribute("aria-checked", "true")
    await consent.click()
    await expect(consent).to_have_attribute("aria-checked", "false")
    assert SPEAKER in services.get_meeting(rt, meeting_id).opted_out

    # the meeting's privacy report: switched on then off, transcribed with the audited key
    await page.get_by_role("button", name="Show privacy report").click()
    await expect(page.locator("#privacy-audit")).to_have_text("intact")
    await expect(page.locator("#privacy-switches")).to_contain_text(" on by ")
    await expect(page.locator("#privacy-switches")).to_contain_text(" off by ")
    await expect(page.locator("#privacy-uses")).to_contain_text("transcribe")
    await stored_content_shown(page, rt, meeting_id)

    # retention: a day for transcripts, ten minutes for audio, saved for the tenant
    await page.get_by_label("Keep transcripts for (days)").fill("1")
    await page.get_by_label("Longest audio may wait untranscribed (minutes)").fill("10")
    await page.get_by_role("button", name="Save retention").click()
    await expect(page.locator("#notice")).to_contain_text("Retention saved")
    tenant = services.get_tenant(rt, services.get_meeting(rt, meeting_id).tenant_id)
    assert (tenant.transcript_ttl, tenant.audio_ttl) == (86400, 600)

    # the audit log lists what happened, and its chain verifies
    await expect(page.locator("#audit-verify")).to_have_text(re.compile("intact"))
    await expect(page.locator("#audit-table tbody tr").first).to_be_visible()

    # API errors are shown as the problem's detail
    await page.get_by_label("Janus room URL").fill("http://example.invalid/1")
    await page.get_by_role("button", name="Send bot").click()
    await expect(page.locator("#error-text")).to_contain_text("janus://")

    # API tokens: a read-only one for a wall display, shown once, then revoked
    await page.get_by_label("New token's name").fill("wall display")
    await page.get_by_role("button", name="Create token").click()
    shown = page.locator("#new-token-value")
    await expect(shown).to_have_value(re.compile(r"^sst_"))
    secret = await shown.input_value()
    assert services.authenticate(rt, secret).id == tenant_id
    row = page.locator("#tokens-table tbody tr").filter(has_text="wall display")
    await expect(row).to_contain_text("read")
    await page.get_by_role("button", name="Done").click()
    await expect(shown).to_be_hidden()
    await page.get_by_role("button", name="Revoke token wall display").click()
    await expect(row).to_have_count(0)
    with pytest.raises(AuthenticationFailed):
        services.authenticate(rt, secret)

    # a phone's width: nothing scrolls sideways
    await page.set_viewport_size({"width": 375, "height": 812})
    await page.wait_for_timeout(100)
    await no_horizontal_scroll(page)

    # log out: the token is gone from the tab
    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_label("Tenant API token")).to_be_focused()
    assert await page.evaluate("sessionStorage.length") == 0
    await no_horizontal_scroll(page)


async def stored_content_shown(page: Page, rt: Runtime, meeting_id: str) -> None:
    """The privacy panel says whether the meeting's stored content is complete (its
    manifests, written by the real capture and worker): complete, then, with one transcript
    segment removed in Redis as an operator could, incomplete with that segment named."""
    state = page.locator("#privacy-complete")
    missing = page.locator("#privacy-missing li")
    await expect(state).to_have_text("complete")
    await expect(missing).to_have_count(0)
    sid = rt.store.segments.transcript_ids(meeting_id)[0]
    r = rt.store.segments.r
    key = schema.transcript(meeting_id, sid)
    r.rename(key, f"{key}:aside")
    try:
        await page.get_by_role("button", name="Show privacy report").click()
        await expect(state).to_have_text("incomplete")
        await expect(state).to_have_class(re.compile(r"\bbad\b"))
        await expect(missing).to_have_text(
            [f"{SPEAKER}: the transcript of segment {sid} was deleted"]
        )
    finally:
        r.rename(f"{key}:aside", key)
    await page.get_by_role("button", name="Show privacy report").click()
    await expect(state).to_have_text("complete")
    await expect(missing).to_have_count(0)


def test_console_end_to_end(rt: Runtime, worker: WorkerProcess, loopback_ice: None) -> None:
    if not CHROMIUM.exists():  # scripts/setup installs it
        pytest.skip(f"the console test needs Debian's chromium at {CHROMIUM}")
    tenant, token = services.create_tenant(rt, "acme")
    pcm = decode_file(CLIP, 60)
    asyncio.run(asyncio.wait_for(scenario(rt, token, tenant.id, pcm), 120))


def show_interim(rt: Runtime, meeting_id: str, who: str, seq: int, part: int, text: str) -> None:
    """What a worker does with an interim's text: sealed with the meeting's transcript key,
    shown in its participant's slot (which announces it on the caption stream)."""
    m = rt.store.meetings.get(meeting_id)
    key = services.data_key(rt, m, KeyUse.TRANSCRIPT, Purpose.TRANSCRIBE)
    segment = TranscriptSegment(who, seq, seq * 5000, seq * 5000 + part * 800, text, part=part)
    sealed = seal_interim_transcript(key, m.tenant_id, m.id, segment)
    assert rt.store.interims.put_text(sealed, part, CAPTION_HISTORY)


def store_final(rt: Runtime, meeting_id: str, who: str, seq: int, text: str) -> None:
    """What a worker's ``_finish`` does: the sealed transcript stored, the audio gone."""
    m = rt.store.meetings.get(meeting_id)
    key = services.data_key(rt, m, KeyUse.TRANSCRIPT, Purpose.TRANSCRIBE)
    segment = TranscriptSegment(who, seq, seq * 5000, seq * 5000 + 3000, text, language="en")
    rt.store.segments.complete(seal_transcript(key, m.tenant_id, m.id, segment), segment.start_ms)


async def interim_scenario(rt: Runtime, token: str, meeting_id: str) -> None:
    async with console_page(rt) as (base, _, page):
        await log_in(page, base, token)
        await page.locator(f".meeting-item[data-id='{meeting_id}']").click()
        await expect(page.locator("#captions-state")).to_have_text("live")
        await watch_interims(page, rt, meeting_id)
        # what the workers counted (four transcribed, two dropped as superseded, one
        # after the final) is in the privacy report, with what interims never become
        rt.store.interims.count(meeting_id, "transcribed", 4)
        rt.store.interims.count(meeting_id, "superseded", 2)
        rt.store.interims.count(meeting_id, "too-late")
        await page.get_by_role("button", name="Show privacy report").click()
        report = page.locator("#privacy-interims")
        await expect(report).to_contain_text("4 transcribed; purged untranscribed: ")
        await expect(report).to_contain_text("superseded: 2; too-late: 1")
        await expect(report).to_contain_text("never enter the transcript")
        # a fresh page (cursor 0) shows the same lines: the finals, once each
        await page.reload()  # logged in again from the tab's sessionStorage
        await expect(page.locator("#console")).to_be_visible()
        await page.locator(f".meeting-item[data-id='{meeting_id}']").click()
        lines = page.locator("#captions .caption")
        await expect(lines).to_have_text(
            [re.compile("So what we need"), re.compile("Yes"), re.compile("Right")]
        )
        await expect(page.locator("#captions .caption.interim")).to_have_count(0)


async def watch_interims(page: Page, rt: Runtime, meeting_id: str) -> None:
    lines = page.locator("#captions .caption")
    alice = lines.filter(has=page.locator(".speaker", has_text="alice"))

    # alice starts speaking: her words so far, greyed, hidden from screen readers
    show_interim(rt, meeting_id, "alice", 0, 1, "so what")
    await expect(alice).to_have_count(1)
    await expect(alice).to_have_class(re.compile(r"\binterim\b"))
    await expect(alice.locator(".caption-text")).to_have_text("so what")
    await expect(alice).to_have_attribute("aria-hidden", "true")
    grey = await alice.locator(".caption-text").evaluate("e => getComputedStyle(e).color")
    assert grey == "rgb(87, 96, 106)", grey  # --muted

    # she goes on: the newer interim replaces the one shown, in the same line
    show_interim(rt, meeting_id, "alice", 0, 2, "so what we need")
    await expect(alice.locator(".caption-text")).to_have_text("so what we need")
    await expect(lines).to_have_count(1)

    # bob starts meanwhile: his own line, after hers
    show_interim(rt, meeting_id, "bob", 0, 1, "yes")
    await expect(lines).to_have_count(2)
    await expect(lines.nth(1)).to_have_class(re.compile(r"\binterim\b"))

    # alice's final replaces her interim in its place, in the normal style
    store_final(rt, meeting_id, "alice", 0, "So what we need is this.")
    await expect(lines.first.locator(".caption-text")).to_have_text("So what we need is this.")
    await expect(lines.first).to_have_class(re.compile(r"\bfinal\b"))
    await expect(lines.first).not_to_have_class(re.compile(r"\binterim\b"))
    await expect(lines.first).not_to_have_attribute("aria-hidden", "true")
    black = await lines.first.locator(".caption-text").evaluate("e => getComputedStyle(e).color")
    assert black != grey, black
    await expect(lines).to_have_count(2)

    # and bob's
    show_interim(rt, meeting_id, "bob", 0, 2, "yes exactly")
    await expect(lines.nth(1).locator(".caption-text")).to_have_text("yes exactly")
    store_final(rt, meeting_id, "bob", 0, "Yes, exactly.")
    await expect(lines.nth(1).locator(".caption-text")).to_have_text("Yes, exactly.")
    await expect(page.locator("#captions .caption.interim")).to_have_count(0)
    await expect(lines).to_have_count(2)
    utterances = await lines.evaluate_all("lines => lines.map(li => li.dataset.utterance)")
    assert utterances == ["alice.0", "bob.0"], utterances

    # an utterance that never gets a final (too short): its interim goes when the speaker's
    # next final comes
    show_interim(rt, meeting_id, "carol", 0, 1, "um")
    await expect(lines).to_have_count(3)
    store_final(rt, meeting_id, "carol", 1, "Right.")
    await expect(lines.nth(2).locator(".caption-text")).to_have_text("Right.")
    await expect(lines).to_have_count(3)
    await expect(page.locator("#captions .caption.interim")).to_have_count(0)


@contextlib.contextmanager
def private_tenant(tmp_path: Path) -> Iterator[tuple[Runtime, RedisServer, Tenant, str]]:
    """A private redis-server and a runtime on it with one tenant: (runtime, server, tenant,
    its admin token). Skips without Chromium (scripts/setup installs it)."""
    if not CHROMIUM.exists():
        pytest.skip(f"the console test needs Debian's chromium at {CHROMIUM}")
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start(20)
    try:
        settings = Settings.from_env(
            {
                "SEALSCRIBE_HOME": str(tmp_path / "home"),
                "SEALSCRIBE_REDIS_URL": redis_server.url,
                "SEALSCRIBE_KEY_PROVIDER": "local",
            }
        )
        rt = Runtime.from_settings(settings, actor="test")
        tenant, token = services.create_tenant(rt, "acme")
        yield rt, redis_server, tenant, token
    finally:
        redis_server.stop()


def test_console_interim_captions_greyed_then_replaced_by_the_final(tmp_path: Path) -> None:
    """Interim captions injected through the real store as a worker stores them, watched in
    Chromium: greyed in the place of their utterance, replaced by newer ones and then by the
    final, one line per utterance."""
    with private_tenant(tmp_path) as (rt, _, tenant, token):
        meeting = services.create_meeting(rt, tenant.id)
        services.set_transcription(rt, meeting.id, True)
        asyncio.run(asyncio.wait_for(interim_scenario(rt, token, meeting.id), 90))


def test_console_is_served_with_a_strict_policy() -> None:
    client = TestClient(create_app())  # no lifespan: the console needs no runtime
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "default-src 'none'" in CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    for name, kind in (
        ("app.js", "text/javascript"),
        ("style.css", "text/css"),
        ("icon.svg", "image/svg+xml"),
    ):
        r = client.get(f"/console/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind), name
        assert r.headers["content-security-policy"] == CSP
    for path in (
        "/console/console.py",
        "/console/..%2Fconsole.py",
        "/console/%2e%2e/app.py",
        "/console/index.htm",
    ):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("application/problem+json"), path


def test_console_sources_keep_the_rules() -> None:
    html = (STATIC / "index.html").read_text()
    js = (STATIC / "app.js").read_text()
    # no inline script or style, nothing from another origin
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert not re.search(r"\son[a-z]+=", html) and " style=" not in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "http://" not in js and "https://" not in js
    # content is written as text; the token lives in sessionStorage only
    assert "innerHTML" not in js and "outerHTML" not in js and "insertAdjacentHTML" not in js
    assert "localStorage" not in js and "document.cookie" not in js
    assert "sessionStorage" in js


def test_console_webhooks_show_a_disabled_endpoint_and_add_one(tmp_path: Path) -> None:
    """The tenant is told in the console when an endpoint was disabled after failing
    deliveries (marked here as the delivery worker marks it; tests/integration/
    test_webhooks.py drives the real failure), re-enables it with one click, and adds an
    endpoint whose secret is shown once, outside the table."""
    with private_tenant(tmp_path) as (rt, redis_server, tenant, token):
        previous = use_broker(redis_server.url)  # a replay queues its delivery here
        egress.configure(EgressPolicy.parse("127.0.0.1"))  # endpoints on loopback may be added
        try:
            endpoint, _ = webhooks.add_endpoint(rt, tenant.id, "http://127.0.0.1:9/down")
            rt.store.webhooks.disable(
                endpoint.id, "every delivery failed for 24.0 h (last: answered HTTP 500)", 1.0
            )
            asyncio.run(asyncio.wait_for(webhook_scenario(rt, token, endpoint.id), 90))
        finally:
            egress.configure(None)
            use_broker(previous)


async def webhook_scenario(rt: Runtime, token: str, endpoint_id: str) -> None:
    async with console_page(rt) as (base, _, page):
        await log_in(page, base, token)
        state = page.locator("#webhooks-state")
        await expect(state).to_have_text("1 endpoint; 1 DISABLED after failing deliveries")
        await expect(state).to_have_class(re.compile(r"\bbad\b"))
        row = page.locator(f"#webhooks-table tr[data-id='{endpoint_id}']")
        await expect(row).to_contain_text("DISABLED: every delivery failed for 24.0 h")
        await expect(page.locator("#notice")).to_contain_text("disabled")

        await page.get_by_role("button", name=f"Re-enable webhook {endpoint_id}").click()
        await expect(row).to_contain_text("enabled")
        await expect(state).to_have_text("1 endpoint")
        assert not rt.store.webhooks.get(endpoint_id).disabled  # type: ignore[union-attr]

        await page.get_by_label("New endpoint's URL").fill("http://127.0.0.1:9/new")
        await page.get_by_role("button", name="Add endpoint").click()
        secret = page.locator("#new-webhook-secret")
        await expect(secret).to_be_visible()
        shown = await secret.input_value()
        assert shown.startswith("whsec_"), shown
        await expect(state).to_have_text("2 endpoints")
        table = await page.locator("#webhooks-table").inner_text()
        assert shown not in table and "http://127.0.0.1:9/new" in table
        await page.get_by_role("button", name="Done").last.click()
        await expect(secret).to_be_hidden()


def test_console_audit_head_downloaded_and_verified_against(tmp_path: Path) -> None:
    """The console shows the audit chain's head and saves it as a file; verifying against
    that file is ok while the chain extends it, and names the truncation once the chain is
    cut back in Redis to before it (as an operator could), though the cut chain still
    verifies by itself."""
    with private_tenant(tmp_path) as (rt, redis_server, tenant, token):
        for _ in range(3):  # the chain gets entries: data keys wrapped, and a rotation
            services.create_meeting(rt, tenant.id)
        services.rotate_keys(rt, tenant.id)
        client = redis.Redis.from_url(redis_server.url)
        try:
            asyncio.run(asyncio.wait_for(head_scenario(rt, client, token, tenant.id), 90))
        finally:
            client.close()


async def head_scenario(rt: Runtime, r: redis.Redis, token: str, tenant_id: str) -> None:
    async with console_page(rt) as (base, _, page):
        await log_in(page, base, token)
        await drive_head(page, r, base, token, tenant_id)


async def drive_head(page: Page, r: redis.Redis, base: str, token: str, tenant_id: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    resp = await page.request.get(f"{base}/v1/audit/head", headers=auth)
    assert resp.ok, await resp.text()
    head = await resp.json()
    assert head["tenant"] == tenant_id and head["count"] >= 4 and head["mac"], head

    # the head is shown: its entry number, time, the start of its hash, that it is keyed
    await expect(page.locator("#head-entry")).to_have_text(str(head["count"] - 1))
    await expect(page.locator("#head-at")).to_have_text(re.compile(r"\d"))
    await expect(page.locator("#head-hash")).to_have_text(re.compile(f"^{head['hash'][:16]}"))
    assert head["hash"][16:] not in ((await page.locator("#head-hash").text_content()) or "")
    await expect(page.locator("#head-mac")).to_have_text(re.compile("^yes"))

    # downloaded as a file: the head as the API gives it (only when it was taken differs)
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download head").click()
    download = await download_info.value
    assert download.suggested_filename == f"audit-head-{tenant_id}-{head['count']}.json"
    saved = Path(await download.path()).read_text()
    assert token not in saved
    kept = json.loads(saved)
    assert isinstance(kept.pop("taken"), float) and kept == {
        k: v for k, v in head.items() if k != "taken"
    }, (kept, head)

    # the chain goes on (a new meeting wraps its keys); it still extends the saved head
    await page.get_by_role("button", name="New meeting").click()
    await expect(page.locator("#head-entry")).not_to_have_text(str(head["count"] - 1))
    chooser = page.get_by_label("Verify against a saved head")
    result = page.locator("#head-verify")
    found = page.locator("#head-problems li")
    await chooser.set_input_files(saved_as(saved))
    await expect(result).to_have_text(re.compile("^ok: "))
    await expect(result).to_have_class(re.compile(r"\bok\b"))
    await expect(found).to_have_count(0)

    # cut the chain back to before the saved head, and fix up the stored head, as
    # tests/privacy/test_records.py does: the cut chain verifies by itself, but not
    # against the head the customer kept
    key, head_key = schema.audit(tenant_id), schema.audit_head(tenant_id)
    rows = [as_str(e) for e in r.lrange(key, 0, -1)]
    stored_head: dict[Any, Any] = dict(r.hgetall(head_key))
    cut = rows[: head["count"] - 2]
    pipe = r.pipeline(transaction=True)
    pipe.delete(key)
    pipe.rpush(key, *cut)
    pipe.hset(head_key, mapping={"count": len(cut), "hash": AuditEntry.from_json(cut[-1]).hash})
    pipe.execute()
    try:
        await page.get_by_role("button", name="Refresh and verify").click()
        await expect(page.locator("#audit-verify")).to_have_text(re.compile("intact"))
        await expect(page.locator("#head-entry")).to_have_text(str(len(cut) - 1))
        await chooser.set_input_files(saved_as(saved))
        await expect(result).to_have_text(re.compile("^NOT ok"))
        await expect(result).to_have_class(re.compile(r"\bbad\b"))
        await expect(found.first).to_have_text(re.compile("^truncated"))
    finally:
        pipe = r.pipeline(transaction=True)
        pipe.delete(key)
        pipe.rpush(key, *rows)
        pipe.hset(head_key, mapping=stored_head)
        pipe.execute()

    # restored: ok again (the same file, chosen again)
    await chooser.set_input_files(saved_as(saved))
    await expect(result).to_have_text(re.compile("^ok: "))
    await expect(found).to_have_count(0)

    # a file that is not a head is refused with words, not sent as one
    await chooser.set_input_files(saved_as("not json", "notes.json"))
    await expect(page.locator("#error-text")).to_contain_text(
        "notes.json is not a saved audit head"
    )


def saved_as(text: str, name: str = "head.json") -> FilePayload:
    return {"name": name, "mimeType": "application/json", "buffer": text.encode()}


def test_console_opt_in_meeting_and_a_participant_consents_on_their_own_link(
    tmp_path: Path,
) -> None:
    """An opt-in meeting made and switched in the console; a consent link made there for one
    participant, opened in a second page and used by them ("Transcribe me"): the console
    then shows them consented by their own link, and another, opted in by the owner, so."""
    with private_tenant(tmp_path) as (rt, _, _tenant, token):
        asyncio.run(asyncio.wait_for(consent_link_scenario(rt, token), 90))


async def consent_link_scenario(rt: Runtime, token: str) -> None:
    async with console_page(rt) as (base, context, page):
        await log_in(page, base, token)
        await drive_consent(page, context, rt, base)


async def drive_consent(page: Page, context: BrowserContext, rt: Runtime, base: str) -> None:
    # an opt-in meeting, chosen at creation
    await page.get_by_label("Consent in new meetings").select_option("opt-in")
    await page.get_by_role("button", name="New meeting").click()
    mode = page.locator("#consent-mode")
    await expect(mode).to_have_text("opt-in")
    meeting_id = (await page.locator("#meeting-id").text_content()) or ""
    assert services.get_meeting(rt, meeting_id).consent_mode == "opt-in"
    await expect(page.locator(f".meeting-item[data-id='{meeting_id}']")).to_contain_text("Opt-in")
    notices = page.locator("#room-notices")
    await expect(notices).to_have_text("The room cannot carry notices: no room is connected.")
    # a bot sent to a Janus room with a text chat: notices reach the room (no bot service
    # runs here, so it stays requested; the meeting's state already says where notices go)
    await page.get_by_label("Janus room URL").fill("janus://127.0.0.1:8088/1234?textroom=1234")
    await page.get_by_role("button", name="Send bot").click()
    await expect(notices).to_have_text(
        "Notices reach the room: the bot posts notices to the room's text chat."
    )

    # switched to notice and back at once, showing what the server answered; the audit
    # view refreshed after each switch is held here (as a long chain's verify is slow), and
    # the switch still takes the second click as soon as the first is shown
    release, held = asyncio.Event(), []

    async def slow_verify(route: Route) -> None:
        held.append(route.request.url)
        await release.wait()
        await route.continue_()

    await page.route("**/v1/audit/verify", slow_verify)
    await page.get_by_role("button", name="Switch to notice").click()
    await expect(mode).to_have_text("notice")
    assert services.get_meeting(rt, meeting_id).consent_mode == "notice"
    await page.get_by_role("button", name="Switch to opt-in").click()
    await expect(mode).to_have_text("opt-in", timeout=15_000)
    assert services.get_meeting(rt, meeting_id).consent_mode == "opt-in"
    assert held and not release.is_set()  # the first refresh was still held meanwhile
    release.set()  # the route stays, passing each verify on at once

    # Bob gets a link but the owner opts him in from the console
    await page.get_by_label("Participant name").fill("Bob")
    await page.get_by_role("button", name="Make consent link").click()
    bob = page.locator("#participants li[data-participant='Bob']")
    await expect(bob.locator(".participant-state")).to_have_text(re.compile("^Waiting for consent"))
    await page.get_by_role("switch", name="Transcribe Bob").click()
    await expect(bob.locator(".participant-state")).to_have_text("Consented")
    await expect(bob.locator(".participant-how")).to_contain_text("opted in by the owner")

    # a link for Dana, for an hour: shown once, in a read-only field, with its expiry
    dana = "Dana Scully"
    await page.get_by_label("Participant name").fill(dana)
    await page.get_by_label("Consent links work for").select_option("3600")
    await page.get_by_role("button", name="Make consent link").click()
    field = page.get_by_label("Consent link URL")
    await expect(field).to_have_value(re.compile(f"^{re.escape(base)}/consent/sl_"))
    await expect(field).to_have_attribute("readonly", "")
    await expect(field).to_be_focused()
    await expect(page.locator("#consent-link-name")).to_have_text(dana)
    await expect(page.locator("#consent-link-expires")).to_have_text(re.compile(r"\d"))
    url = await field.input_value()
    body = url.split("/consent/sl_", 1)[1].split(".", 1)[0]
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert claims["p"] == dana and abs(claims["e"] - time.time() - 3600) < 60, claims
    row = page.locator(f"#participants li[data-participant='{dana}']")
    await expect(row.locator(".participant-state")).to_have_text(re.compile("^Waiting for consent"))
    await expect(page.get_by_role("switch", name=f"Transcribe {dana}")).to_have_attribute(
        "aria-checked", "false"
    )
    await expect(row.locator(".participant-how")).to_have_count(0)

    # Dana opens her link in another page of the same browser and consents there
    own = await context.new_page()
    response = await own.goto(url)
    assert response is not None and response.ok
    await expect(own.locator("#state")).to_contain_text("not consented")
    await own.locator("#optin").click()
    await expect(own.locator("#note")).to_have_text("Saved: you will be transcribed.")
    await own.close()
    assert dana in services.get_meeting(rt, meeting_id).opted_in

    # the console, refreshed, shows her consented by her own link, and Bob by the owner
    await page.get_by_role("button", name="Refresh participants").click()
    await expect(row.locator(".participant-state")).to_have_text("Consented")
    await expect(row.locator(".participant-how")).to_contain_text("opted in by their own link")
    await expect(page.get_by_role("switch", name=f"Transcribe {dana}")).to_have_attribute(
        "aria-checked", "true"
    )
    await expect(bob.locator(".participant-how")).to_contain_text("opted in by the owner")

    # at a phone's width, the link and the rows do not scroll sideways; hidden, it is gone
    await page.set_viewport_size({"width": 375, "height": 812})
    await page.wait_for_timeout(100)
    await no_horizontal_scroll(page)
    await page.get_by_role("button", name="Hide link").click()
    await expect(field).to_be_hidden()
    assert await field.input_value() == ""
