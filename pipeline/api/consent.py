"""The consent page a participant opens from their link: ``GET /consent/{token}`` shows their
choice, ``POST`` (a plain HTML form, no script) changes it. No API token is needed, and the
link's token opens nothing but this page for its one participant (``pipeline.services
.consent``). Served with a strict policy: no script at all, forms to this origin only."""

from __future__ import annotations

import asyncio
import html
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Request, Response

from pipeline.api.auth import RuntimeDep
from pipeline.models import CONSENT_OPT_IN, Meeting
from pipeline.services import consent

__all__ = ["PAGE_CSP", "router"]

router = APIRouter(include_in_schema=False)

PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in the URL: never sent onwards
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
Token = Annotated[str, Path(max_length=1024)]

_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem}"
    "button{font:inherit;padding:.5rem 1rem;margin:.25rem .5rem .25rem 0}"
    ".state{font-weight:600}"
)


def _page(title: str, body: str, status: int = 200) -> Response:
    doc = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return Response(
        doc, status_code=status, media_type="text/html; charset=utf-8", headers=_HEADERS
    )


def _state(meeting: Meeting, participant: str) -> str:
    if participant in meeting.opted_out:
        return "You opted out: nothing you say is kept or transcribed."
    if meeting.consent_mode == CONSENT_OPT_IN and participant not in meeting.opted_in:
        return "You have not consented: nothing you say is kept or transcribed."
    return "You are transcribed while transcription is on."


def _choice(token: str, meeting: Meeting, participant: str, note: str = "") -> Response:
    action = f"/consent/{html.escape(token, quote=True)}"
    switch = "on" if meeting.transcription else "off"
    body = (
        f"<p>Meeting transcription is <b>{switch}</b>. This page decides for "
        f"<b>{html.escape(participant)}</b> only.</p>"
        f"<p class=state id=state>{html.escape(_state(meeting, participant))}</p>"
        f"{f'<p id=note>{html.escape(note)}</p>' if note else ''}"
        f'<form method=post action="{action}">'
        "<button name=choice value=optout id=optout>Do not transcribe me</button>"
        "<button name=choice value=optin id=optin>Transcribe me</button></form>"
        "<p>Your choice takes effect within a second and is recorded in the meeting's privacy "
        "report.</p>"
    )
    return _page("Transcription consent", body)


def _refused() -> Response:
    return _page(
        "This link is not valid",
        "<p>It was altered, has expired, or its meeting no longer exists. Ask the meeting's "
        "organiser for a new one.</p>",
        403,
    )


@router.get("/consent/{token}", response_class=Response, name="consent_page")
def page(token: Token, rt: RuntimeDep) -> Response:
    try:
        link = consent.check_link(rt, token)
    except consent.LinkRefused:
        return _refused()
    return _choice(token, link.meeting, link.participant)


@router.post("/consent/{token}", response_class=Response)
async def choose(token: Token, request: Request, rt: RuntimeDep) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=4)
    choice = (form.get("choice") or [""])[0]
    if choice not in ("optout", "optin"):
        return _page("Choose one", "<p>Choose whether to be transcribed.</p>", 400)
    try:
        participant, meeting = await asyncio.to_thread(
            consent.apply_link, rt, token, choice == "optin"
        )
    except consent.LinkRefused:
        return _refused()
    done = "Saved: you will be transcribed." if choice == "optin" else "Saved: you opted out."
    return _choice(token, meeting, participant, done)
