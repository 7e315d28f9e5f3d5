"""The tenant's named API tokens: create, list, revoke, rotate (``admin`` scope).

A token is shown once, in the answer that creates or rotates it; only its SHA-256 is stored.
Revoking or rotating takes effect at once, also for caption sockets opened with it (closed
within seconds). The tenant's last admin token cannot be revoked (409): make another first,
or rotate it.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel, Field

from pipeline.api.auth import Admin, CurrentCaller, RuntimeDep
from pipeline.api.problems import MAX_JSON_BYTES, StrictBody, problem_responses
from pipeline.models import ApiToken
from pipeline.services import tokens
from pipeline.services.tokens import MAX_LIFETIME, MIN_LIFETIME

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/tokens",
    tags=["tokens"],
    max_body_size=MAX_JSON_BYTES,
    responses=problem_responses(401, 403, 503),
)

TokenId = Annotated[str, Path(pattern=r"^tk_[0-9a-f]{16}$", description="token id")]
ScopeName = Literal["admin", "meetings", "read"]


class TokenOut(BaseModel):
    id: str
    name: str
    scopes: list[ScopeName]
    created: float
    expires: float | None = Field(description="when it stops working, or null: never")
    expired: bool

    @classmethod
    def of(cls, t: ApiToken) -> TokenOut:
        return cls(
            id=t.id,
            name=t.name,
            scopes=sorted(t.scopes),  # type: ignore[arg-type]
            created=t.created,
            expires=t.expires,
            expired=t.expired(time.time()),
        )


class NewTokenOut(TokenOut):
    token: str = Field(description="the token itself: shown this once, stored only hashed")


class TokenIn(StrictBody):
    name: str = Field(default="api", min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
    scopes: list[ScopeName] = Field(
        min_length=1,
        max_length=3,
        description="admin: keys, erasure, tokens (and everything else); meetings: meetings, "
        "bots, WHIP, live captions; read: meetings, transcripts, live captions",
    )
    expires_in: int | None = Field(
        default=None, ge=MIN_LIFETIME, le=MAX_LIFETIME, description="seconds; null: never"
    )


def _new(info: ApiToken, token: str) -> NewTokenOut:
    return NewTokenOut(**TokenOut.of(info).model_dump(), token=token)


@router.post("", status_code=status.HTTP_201_CREATED, responses=problem_responses(400, 429))
def create(body: TokenIn, tenant: Admin, caller: CurrentCaller, rt: RuntimeDep) -> NewTokenOut:
    """A new named token with the given scopes (at most 50 per tenant)."""
    info, token = tokens.create_token(
        rt, tenant.id, body.name, body.scopes, body.expires_in, f"token:{caller.token.id}"
    )
    return _new(info, token)


@router.get("")
def list_(tenant: Admin, rt: RuntimeDep) -> list[TokenOut]:
    """Every token of the tenant (never the tokens themselves), oldest first."""
    return [TokenOut.of(t) for t in tokens.list_tokens(rt, tenant.id)]


@router.delete(
    "/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(404, 409),
)
def revoke(token_id: TokenId, tenant: Admin, caller: CurrentCaller, rt: RuntimeDep) -> Response:
    """The token stops working at once; the last admin token cannot be revoked (409)."""
    tokens.revoke_token(rt, tenant.id, token_id, f"token:{caller.token.id}")
    return Response(status_code=204)


@router.post("/{token_id}/rotate", responses=problem_responses(404))
def rotate(token_id: TokenId, tenant: Admin, caller: CurrentCaller, rt: RuntimeDep) -> NewTokenOut:
    """A new secret for the token (same id, name, scopes and lifetime); the old one stops
    working at once."""
    info, token = tokens.rotate_token(rt, tenant.id, token_id, f"token:{caller.token.id}")
    return _new(info, token)
