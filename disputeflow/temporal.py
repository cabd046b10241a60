"""How every process reaches Temporal: one data converter, one set of search attributes."""

from __future__ import annotations

import dataclasses
from typing import Any

from temporalio.api.failure.v1 import Failure
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.service import RetryConfig, TLSConfig

from disputeflow.codec import EncryptionCodec, codec_for
from disputeflow.settings import Settings

# Custom search attributes, registered with the dev server by `make run` and upserted by the
# case workflow, so Temporal's own UI and CLI can filter cases too.
CASE_STAGE = SearchAttributeKey.for_keyword("CaseStage")
CASE_REGION = SearchAttributeKey.for_keyword("CaseRegion")
CASE_URGENCY = SearchAttributeKey.for_keyword("CaseUrgency")
CASE_BREACHED = SearchAttributeKey.for_bool("CaseBreached")
SEARCH_ATTRIBUTES = [CASE_STAGE, CASE_REGION, CASE_URGENCY, CASE_BREACHED]


def search_attribute_flags() -> list[str]:
    """`--search-attribute NAME=TYPE` arguments for `temporal server start-dev`."""
    kinds = {"KEYWORD": "Keyword", "BOOL": "Bool"}
    flags: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}"]
    return flags


def tls_config(settings: Settings) -> TLSConfig | bool:
    """What `Client.connect(tls=...)` takes: False, True (TLS with the system's trust store), or the
    files for a private CA and mutual TLS, read now (a missing or unreadable one says which)."""
    files = {"TEMPORAL_TLS_SERVER_CA": settings.temporal_tls_server_ca,
             "TEMPORAL_TLS_CLIENT_CERT": settings.temporal_tls_client_cert,
             "TEMPORAL_TLS_CLIENT_KEY": settings.temporal_tls_client_key}
    if all(path is None for path in files.values()) and settings.temporal_tls_server_name is None:
        return settings.temporal_tls
    pem: dict[str, bytes | None] = {}
    for variable, path in files.items():
        try:
            pem[variable] = None if path is None else path.read_bytes()
        except OSError as exc:
            raise ValueError(f"{variable}: cannot read {path}: {exc.strerror}") from None
    return TLSConfig(
        server_root_ca_cert=pem["TEMPORAL_TLS_SERVER_CA"],
        client_cert=pem["TEMPORAL_TLS_CLIENT_CERT"],
        client_private_key=pem["TEMPORAL_TLS_CLIENT_KEY"],
        domain=settings.temporal_tls_server_name,
    )


class EncryptedFailureConverter(DefaultFailureConverterWithEncodedAttributes):
    """Failures' message and stack trace travel in `encoded_attributes`, a payload the codec
    encrypts (an exception's text may quote what it failed on, a caller's data among it).

    Each is cut to a size Temporal keeps: the server replaces a pending activity's last failure
    that is too large by "Failure exceeds size limit", which would leave operators nothing to read.
    The message keeps its beginning, the stack trace its end (the frames nearest the error)."""

    MESSAGE_CHARS = 1000
    STACK_TRACE_CHARS = 1500

    def to_failure(self, exception: BaseException, payload_converter: Any, failure: Failure) -> None:
        super().to_failure(exception, payload_converter, failure)
        if not failure.HasField("encoded_attributes"):
            return
        attributes = payload_converter.from_payloads([failure.encoded_attributes], None)[0]
        message, trace = str(attributes.get("message") or ""), str(attributes.get("stack_trace") or "")
        if len(message) <= self.MESSAGE_CHARS and len(trace) <= self.STACK_TRACE_CHARS:
            return
        if len(message) > self.MESSAGE_CHARS:
            message = message[: self.MESSAGE_CHARS] + " [cut]"
        if len(trace) > self.STACK_TRACE_CHARS:
            trace = "[cut] " + trace[-self.STACK_TRACE_CHARS:]
        failure.encoded_attributes.CopyFrom(
            payload_converter.to_payloads([{"message": message, "stack_trace": trace}])[0])


def data_converter(settings: Settings, codec: EncryptionCodec | None = None) -> DataConverter:
    """The one data converter of every process (worker, API, CLI, replay): pydantic JSON, then every
    payload encrypted with the payload keys (`disputeflow.codec`). Failures' messages and stack
    traces go into an encrypted payload too (an exception's text may quote what it failed on).
    Payloads and failures without the encryption (recorded before it) still decode. Raises
    `PayloadKeyError` for unusable keys."""
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec or codec_for(settings),
                               failure_converter_class=EncryptedFailureConverter)


async def connect(settings: Settings, *, retry_config: RetryConfig | None = None) -> Client:
    """`retry_config`: how long a call retries an unreachable server (default: the SDK's, ~10 s)."""
    return await Client.connect(
        settings.effective_temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        tls=tls_config(settings),
        api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
        retry_config=retry_config,
    )


async def register_search_attributes(client: Client, namespace: str) -> None:
    """Register the case search attributes on a server that lacks them (test servers, a new cluster)."""
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={key.name: key.indexed_value_type for key in SEARCH_ATTRIBUTES},
        )
    )
