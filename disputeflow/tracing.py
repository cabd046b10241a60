"""OpenTelemetry tracing, only when configured: `OTEL_EXPORTER_OTLP_ENDPOINT` (OTLP over HTTP).

One request is followed through the API (FastAPI's instrumentation), the Temporal client call it
makes, the workflow and its activities (the SDK's `TracingInterceptor`, on the client and so on
the workers built on it): one trace id throughout. Spans carry ids and route templates, never a
caller's data (the FastAPI instrumentation's span names are route templates; the query string is
taken out of the URL attributes, headers are not recorded).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

_provider: Any = None  # the TracerProvider in use, or None: tracing off


def configure(endpoint: str | None, service_name: str) -> bool:
    """Install a TracerProvider exporting to `endpoint` (OTLP/HTTP); False (nothing) when unset."""
    if not endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")))
    use_provider(provider)
    log.info("tracing to %s", endpoint)
    return True


def use_provider(provider: Any) -> None:
    """Trace with `provider` (a test's, with an in-memory exporter), or stop tracing with None."""
    global _provider
    _provider = provider
    if provider is not None:
        from opentelemetry import trace

        trace.set_tracer_provider(provider)


def enabled() -> bool:
    return _provider is not None


def temporal_interceptors() -> list[Any]:
    if _provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(_provider.get_tracer("disputeflow.temporal"))]


# For `FastAPI(telemetry=...)`: traces are this module's (OpenTelemetry's FastAPI instrumentation,
# when an endpoint is set) and metrics disputeflow.metrics'. FastAPI's own telemetry, on by default,
# asks OpenTelemetry for its three global providers on every request (a tenth of an intake's CPU in
# the API) to find them unconfigured.
NO_NATIVE_TELEMETRY = {"tracing": False, "metrics": False, "logs": False}


def instrument_app(app: Any) -> None:
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls="health",
                                       server_request_hook=_without_query)


# Where the ASGI instrumentation puts the URL, query string included (`?phone=`, `?q=` would put a
# caller's number or name in the trace).
_URL_ATTRIBUTES = ("http.url", "url.full")
_TARGET_ATTRIBUTES = ("http.target",)
_QUERY_ATTRIBUTES = ("url.query",)


def _without_query(span: Any, scope: dict[str, Any]) -> None:
    """Overwrite the request span's URL attributes with the path alone (no query string)."""
    if span is None or not span.is_recording():
        return
    present = dict(getattr(span, "attributes", None) or {})
    for key in _URL_ATTRIBUTES:
        if key in present:
            span.set_attribute(key, str(present[key]).split("?", 1)[0])
    for key in _TARGET_ATTRIBUTES:
        if key in present:
            span.set_attribute(key, scope.get("path", ""))
    for key in _QUERY_ATTRIBUTES:
        if key in present:
            span.set_attribute(key, "")


def shutdown() -> None:
    if _provider is not None:
        _provider.shutdown()
