"""The codec endpoint: the Temporal Web UI (and `temporal --codec-endpoint`) decrypts payloads here.

Temporal stores every payload encrypted (`disputeflow.codec`); an auditor reading a case's history
in the Web UI sees it in clear only through this endpoint, with a bearer token of an auditor or a
supervisor. It speaks Temporal's remote codec protocol:

    POST /codec/decode   {"payloads": [{"metadata": {"encoding": "<base64>", ...}, "data": "<base64>"}]}
    POST /codec/encode   the same shape; answers the payloads encoded

Point the UI at it: `temporal server start-dev --ui-codec-endpoint http://127.0.0.1:8000/codec` (what
`make run` does), or `codec.endpoint` in a UI's configuration, with `codec.passAccessToken: true` so
that the UI sends its user's `Authorization` header. Browsers call it across origins: CORS admits the
Web UI's origins (`DISPUTEFLOW_CODEC_CORS_ORIGINS`) on `/codec/*` only.

A payload without the encryption marker comes back unchanged; one of an erased case (its data key
destroyed) comes back as the JSON string `"(erased)"` with metadata `disputeflow-erased`; one that
cannot be decrypted is 400, naming the key id and never the payload. Every decryption is recorded
in the read log (kind `payloads`, per case named in the payloads' metadata) before the answer.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Request
from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payloads

from api.auth import router_for
from api.errors import ApiError, error_responses
from api.read_log import ReadLogDep
from disputeflow.codec import (
    EncryptionCodec,
    PayloadDecryptionError,
    case_of,
    codec_for,
    is_encrypted,
    is_erased_marker,
)
from disputeflow.domain.enums import Role

CODEC_ROLES = (Role.auditor, Role.supervisor)
router = router_for(*CODEC_ROLES, prefix="/codec", tags=["auditors"], responses=error_responses(400, 413))


# Standard base64 with its padding optional, as Temporal's JSON carries bytes: every string of this
# shape decodes (tests/api/test_codec.py), so the schema says exactly what the endpoint can read.
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$"
Base64 = Annotated[str, StringConstraints(pattern=BASE64_PATTERN)]


class CodecPayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    metadata: dict[str, Base64] = Field(default_factory=dict, description="Each value base64")
    data: Base64 = Field(default="", description="base64")


class CodecPayloads(BaseModel):
    model_config = ConfigDict(extra="allow")

    payloads: list[CodecPayload] = Field(max_length=1000)


class PayloadUndecryptable(ApiError):
    status_code = 400


def _codec(request: Request) -> EncryptionCodec:
    state = request.app.state
    if getattr(state, "payload_codec", None) is None:  # read (or generated) once per process
        state.payload_codec = codec_for(state.settings)
    return state.payload_codec


def _parse(body: CodecPayloads) -> Payloads:
    try:
        return json_format.ParseDict(body.model_dump(), Payloads(), ignore_unknown_fields=True)
    except json_format.ParseError:
        raise PayloadUndecryptable("payloads must carry base64 metadata values and data") from None


def _answer(payloads: list[Any]) -> dict[str, Any]:
    return json_format.MessageToDict(Payloads(payloads=payloads))


@router.post("/decode", summary="Decrypt payloads (Temporal remote codec)",
             description="For the Temporal Web UI: the payloads as Temporal stores them in, decrypted out. "
                         "Auditors and supervisors only.")
async def decode(body: CodecPayloads, request: Request, read_log: ReadLogDep) -> dict[str, Any]:
    payloads = _parse(body).payloads
    try:
        decoded = await _codec(request).decode(payloads)
    except PayloadDecryptionError as error:
        raise PayloadUndecryptable(str(error)) from None
    # Every decryption is a read of the cases the payloads belong to (their metadata names the case),
    # recorded before the answer leaves; payloads encrypted with the shared keys name no case: "".
    # An erased case's payloads decode to the "(erased)" marker: nothing of it is read.
    counts: dict[str, int] = {}
    for payload, plain in zip(payloads, decoded, strict=True):
        if is_encrypted(payload) and not is_erased_marker(plain):
            case_id = case_of(payload) or ""
            counts[case_id] = counts.get(case_id, 0) + 1
    for case_id, count in counts.items():
        await read_log.aaccess([case_id], kind="payloads", detail=f"{count} payloads")
    return _answer(decoded)


@router.post("/encode", summary="Encrypt payloads (Temporal remote codec)",
             description="For the Temporal Web UI (input it sends to a workflow): payloads in, encrypted with "
                         "the newest payload key out.")
async def encode(body: CodecPayloads, request: Request) -> dict[str, Any]:
    return _answer(_codec(request).encode_sync(_parse(body).payloads))


class CodecCORS:
    """CORS for the Web UI's origins on `/codec/*` only; every other path is served without it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cors: CORSMiddleware | None = None  # the origins come from the settings the lifespan read

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/codec/"):
            if self.cors is None:
                origins = scope["app"].state.settings.effective_codec_cors_origins
                self.cors = CORSMiddleware(
                    self.app, allow_origins=origins, allow_methods=["POST"], allow_credentials=True,
                    allow_headers=["authorization", "content-type", "x-namespace"], max_age=600,
                )
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
