"""All configuration in one place, read from the environment (or a .env file)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, AnyHttpUrl, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_POLICY_FILE = Path(__file__).parent / "data" / "policy.toml"
DEFAULT_REFERENCE_FILE = Path(__file__).parent / "data" / "reference.json"


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_webhook_url(url: str) -> str:
    """`url` if it is https, or http to a loopback address; ValueError otherwise."""
    parsed = urlsplit(url)
    if parsed.scheme == "https" or (parsed.scheme == "http" and is_loopback(parsed.hostname or "")):
        return url
    raise ValueError("DISPUTEFLOW_NOTIFY_WEBHOOK_URL must be https (http only to this machine's loopback): "
                     "notifications and their signatures would cross the network in clear")


def webhook_key_bytes(secret: str) -> bytes:
    """The webhook HMAC key: `whsec_<base64>` (Standard Webhooks' form) decoded, else the text's bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("DISPUTEFLOW_NOTIFY_WEBHOOK_SECRET: whsec_ must be followed by base64") from None
    return secret.encode()


MIN_WEBHOOK_KEY_BYTES = 24


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    temporal_address: str | None = Field(
        default=None,
        validation_alias=_env("TEMPORAL_ADDRESS"),
        description="host:port of an existing Temporal cluster; unset means the embedded dev server",
    )
    temporal_namespace: str = Field(default="default", validation_alias=_env("TEMPORAL_NAMESPACE"))
    temporal_task_queue: str = Field(default="disputeflow-cases", validation_alias=_env("TEMPORAL_TASK_QUEUE"))
    temporal_tls: bool = Field(
        default=False, validation_alias=_env("TEMPORAL_TLS"), description="connect to the cluster over TLS"
    )
    temporal_tls_client_cert: Path | None = Field(
        default=None, validation_alias=_env("TEMPORAL_TLS_CLIENT_CERT"),
        description="PEM client certificate for mutual TLS (with TEMPORAL_TLS_CLIENT_KEY); implies TLS",
    )
    temporal_tls_client_key: Path | None = Field(
        default=None, validation_alias=_env("TEMPORAL_TLS_CLIENT_KEY"),
        description="PEM private key of the client certificate",
    )
    temporal_tls_server_ca: Path | None = Field(
        default=None, validation_alias=_env("TEMPORAL_TLS_SERVER_CA"),
        description="PEM CA that signed the cluster's certificate, if not one the system trusts; implies TLS",
    )
    temporal_tls_server_name: str | None = Field(
        default=None, validation_alias=_env("TEMPORAL_TLS_SERVER_NAME"),
        description="Name to verify the cluster's certificate against, if not the address's host",
    )
    temporal_api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("TEMPORAL_API_KEY"), description="API key for the cluster, if it needs one"
    )
    temporal_dev_port: int = Field(default=7233, validation_alias=_env("TEMPORAL_DEV_PORT"))
    temporal_ui_port: int = Field(default=8233, validation_alias=_env("TEMPORAL_UI_PORT"))

    database_url: str | None = Field(
        default=None,
        validation_alias=_env("DATABASE_URL"),
        description="SQLAlchemy URL; unset means a SQLite file in the data folder",
    )
    data_dir: Path = Field(default=Path("var"), validation_alias=_env("DISPUTEFLOW_DATA_DIR"))
    policy_file: Path = Field(default=DEFAULT_POLICY_FILE, validation_alias=_env("DISPUTEFLOW_POLICY_FILE"))
    reference_file: Path = Field(
        default=DEFAULT_REFERENCE_FILE, validation_alias=_env("DISPUTEFLOW_REFERENCE_FILE")
    )

    payload_keys: SecretStr | None = Field(
        default=None,
        validation_alias=_env("DISPUTEFLOW_PAYLOAD_KEYS"),
        description="AES-256 keys for Temporal payloads, `id:base64key,...`, newest last (it encrypts; all "
                    "decrypt); unset: the key file",
    )
    payload_key_file: Path | None = Field(
        default=None,
        validation_alias=_env("DISPUTEFLOW_PAYLOAD_KEY_FILE"),
        description="JSON key file of the payload keys; unset: $DISPUTEFLOW_DATA_DIR/keys/payload-keys.json, "
                    "generated on first use",
    )
    case_key_cache_seconds: float = Field(
        default=60.0, ge=0, le=3600,
        validation_alias=_env("DISPUTEFLOW_CASE_KEY_CACHE_SECONDS"),
        description="How long a process keeps a case's data key in memory before reading it again (an erasure "
                    "made by another process is seen within this time)",
    )
    codec_cors_origins: str | None = Field(
        default=None,
        validation_alias=_env("DISPUTEFLOW_CODEC_CORS_ORIGINS"),
        description="Comma-separated origins (the Temporal Web UI's) allowed to call the codec endpoint from a browser; "
                    "unset: the embedded dev server's UI",
    )

    token_algorithm: Literal["EdDSA", "HS256"] = Field(
        default="EdDSA", validation_alias=_env("DISPUTEFLOW_TOKEN_ALGORITHM"),
        description="EdDSA (Ed25519: only the token issuer holds the private key, the API the public keys); "
                    "HS256 only when set here, with DISPUTEFLOW_JWT_SECRET of at least 32 bytes",
    )
    token_signing_key_file: Path | None = Field(
        default=None, validation_alias=_env("DISPUTEFLOW_TOKEN_SIGNING_KEY_FILE"),
        description="PEM Ed25519 private key that `disputeflow token` signs with; unset: "
                    "$DISPUTEFLOW_DATA_DIR/keys/token-signing-key.pem, generated on first use",
    )
    token_jwks_url: AnyHttpUrl | None = Field(
        default=None, validation_alias=_env("DISPUTEFLOW_TOKEN_JWKS_URL"),
        description="Where the API fetches the token issuer's public keys (a JWKS); unset: the JWKS file",
    )
    token_jwks_file: Path | None = Field(
        default=None, validation_alias=_env("DISPUTEFLOW_TOKEN_JWKS_FILE"),
        description="A local JWKS of the issuer's public keys; unset (and no URL): the public half of the "
                    "signing key file (one machine)",
    )
    token_issuer: str = Field(default="disputeflow", min_length=1, validation_alias=_env("DISPUTEFLOW_TOKEN_ISSUER"))
    token_audience: str = Field(
        default="disputeflow-api", min_length=1, validation_alias=_env("DISPUTEFLOW_TOKEN_AUDIENCE"))
    jwt_secret: SecretStr | None = Field(
        default=None,
        validation_alias=_env("DISPUTEFLOW_JWT_SECRET"),
        description="HMAC key for HS256 tokens (at least 32 bytes; only with DISPUTEFLOW_TOKEN_ALGORITHM=HS256)",
    )
    token_ttl_hours: float = Field(default=12, gt=0, validation_alias=_env("DISPUTEFLOW_TOKEN_TTL_HOURS"))
    token_max_ttl_hours: float = Field(
        default=12, gt=0, le=24 * 7, validation_alias=_env("DISPUTEFLOW_TOKEN_MAX_TTL_HOURS"),
        description="Longest lifetime of a token: longer ones are neither issued nor accepted",
    )
    intake_key_ttl_hours: float = Field(
        default=24, gt=0, le=24 * 30, validation_alias=_env("DISPUTEFLOW_INTAKE_KEY_TTL_HOURS"),
        description="How long an Idempotency-Key of POST /cases stands for its case; then it is deleted",
    )
    max_body_bytes: int = Field(default=64 * 1024, validation_alias=_env("DISPUTEFLOW_MAX_BODY_BYTES"))
    rate_limit_per_minute: int = Field(
        default=240, ge=1, validation_alias=_env("DISPUTEFLOW_RATE_LIMIT_PER_MINUTE"),
        description="Requests per minute per user (token subject) on every route, in bursts of as many; then 429",
    )
    rate_limit_search_per_minute: int = Field(
        default=30, ge=1, validation_alias=_env("DISPUTEFLOW_RATE_LIMIT_SEARCH_PER_MINUTE"),
        description="Of which listings and searches (GET /cases, POST /cases/search) per minute per user",
    )
    rate_limit_expensive_per_minute: int = Field(
        default=6, ge=1, validation_alias=_env("DISPUTEFLOW_RATE_LIMIT_EXPENSIVE_PER_MINUTE"),
        description="Of which replays, history exports, timelines, audit checks and verifications per minute per user",
    )
    forecast_max_cases: int = Field(
        default=20_000, ge=1, le=1_000_000, validation_alias=_env("DISPUTEFLOW_FORECAST_MAX_CASES"),
        description="Cases one staffing forecast started through the API may simulate (all levels and runs together)",
    )

    notify_webhook_url: AnyHttpUrl | None = Field(
        default=None,
        validation_alias=_env("DISPUTEFLOW_NOTIFY_WEBHOOK_URL"),
        description="where the worker POSTs each notification (an SMS or mail gateway); unset: none sent",
    )
    notify_webhook_secret: SecretStr | None = Field(
        default=None,
        validation_alias=_env("DISPUTEFLOW_NOTIFY_WEBHOOK_SECRET"),
        description="Key of the webhook-signature header (Standard Webhooks): whsec_<base64> or text, at least 24 "
                    "bytes; required with the URL",
    )

    health_worker_seen_within_seconds: float = Field(
        default=90.0, gt=0, validation_alias=_env("DISPUTEFLOW_HEALTH_WORKER_SEEN_WITHIN_SECONDS"),
        description="GET /health wants a worker polling the task queue within this long (an idle worker's "
        "long poll renews about every 60 s)",
    )
    health_notify_backlog_max: int = Field(
        default=500, ge=0, validation_alias=_env("DISPUTEFLOW_HEALTH_NOTIFY_BACKLOG_MAX"),
        description="GET /health is degraded when more notifications than this wait for the webhook",
    )
    health_notify_backlog_max_age_seconds: float = Field(
        default=600.0, gt=0, validation_alias=_env("DISPUTEFLOW_HEALTH_NOTIFY_BACKLOG_MAX_AGE_SECONDS"),
        description="GET /health is degraded when the oldest notification has waited for the webhook longer",
    )
    worker_shutdown_grace_seconds: float = Field(
        default=30.0, ge=0, validation_alias=_env("DISPUTEFLOW_WORKER_SHUTDOWN_GRACE_SECONDS"),
        description="on SIGTERM, how long the worker lets running activities finish before cancelling them",
    )
    worker_max_cached_workflows: int | None = Field(
        default=None, ge=0, validation_alias=_env("DISPUTEFLOW_WORKER_MAX_CACHED_WORKFLOWS"),
        description="workflows the worker keeps in memory between tasks; unset: the SDK's default (1000); 0: none, "
        "so every task replays the case's history (CI runs the workflow tests so too)",
    )

    metrics_host: str = Field(
        default="127.0.0.1", validation_alias=_env("DISPUTEFLOW_METRICS_HOST"),
        description="Address the API's and the worker's Prometheus endpoints listen on (not the API's port: "
                    "a reverse proxy in front of the API never exposes them)",
    )
    api_metrics_port: int = Field(
        default=9464, ge=0, le=65535, validation_alias=_env("DISPUTEFLOW_API_METRICS_PORT"),
        description="Port of the API's /metrics (HTTP and read-model figures); 0: none",
    )
    worker_metrics_port: int = Field(
        default=9465, ge=0, le=65535, validation_alias=_env("DISPUTEFLOW_WORKER_METRICS_PORT"),
        description="Port of the worker's /metrics (the Temporal SDK's worker and workflow metrics); 0: none",
    )
    metrics_cache_seconds: float = Field(
        default=15.0, ge=0, validation_alias=_env("DISPUTEFLOW_METRICS_CACHE_SECONDS"),
        description="How long the read-model figures of a scrape are reused before they are queried again",
    )
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", validation_alias=_env("DISPUTEFLOW_LOG_FORMAT"),
        description="auto: readable lines on a terminal, JSON lines otherwise",
    )
    log_level: str = Field(default="INFO", validation_alias=_env("DISPUTEFLOW_LOG_LEVEL"))
    otlp_endpoint: str | None = Field(
        default=None, validation_alias=_env("OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="OTLP/HTTP collector for traces (e.g. http://127.0.0.1:4318); unset: no tracing",
    )

    public_url: AnyHttpUrl | None = Field(
        default=None, validation_alias=_env("DISPUTEFLOW_PUBLIC_URL"),
        description="The API's address as people reach it, for the links in webhook deliveries; "
                    "unset: http://DISPUTEFLOW_API_HOST:DISPUTEFLOW_API_PORT",
    )
    # The console (/console): sign-in through the organisation's OpenID Connect provider. Without an
    # issuer the console offers a development sign-in that lists the reference staff instead.
    console_oidc_issuer: AnyHttpUrl | None = Field(
        default=None, validation_alias=_env("DISPUTEFLOW_CONSOLE_OIDC_ISSUER"),
        description="OpenID Connect issuer; its /.well-known/openid-configuration is read on first sign-in",
    )
    console_oidc_client_id: str | None = Field(default=None, validation_alias=_env("DISPUTEFLOW_CONSOLE_OIDC_CLIENT_ID"))
    console_oidc_client_secret: SecretStr | None = Field(
        default=None, validation_alias=_env("DISPUTEFLOW_CONSOLE_OIDC_CLIENT_SECRET"))
    console_oidc_scope: str = Field(default="openid profile", validation_alias=_env("DISPUTEFLOW_CONSOLE_OIDC_SCOPE"))
    console_oidc_role_claim: str = Field(default="role", validation_alias=_env("DISPUTEFLOW_CONSOLE_OIDC_ROLE_CLAIM"))
    console_oidc_region_claim: str = Field(default="region",
                                           validation_alias=_env("DISPUTEFLOW_CONSOLE_OIDC_REGION_CLAIM"))
    console_oidc_role_map: dict[str, str] = Field(
        default_factory=dict, validation_alias=_env("DISPUTEFLOW_CONSOLE_OIDC_ROLE_MAP"),
        description='JSON: the provider\'s role names to disputeflow\'s, e.g. {"12348-mediators": "mediator"}; '
                    "a role not in the map is taken as it is",
    )
    console_session_hours: float = Field(default=10, gt=0, le=24,
                                         validation_alias=_env("DISPUTEFLOW_CONSOLE_SESSION_HOURS"))
    api_host: str = Field(default="127.0.0.1", validation_alias=_env("DISPUTEFLOW_API_HOST"))
    api_port: int = Field(default=8000, validation_alias=_env("DISPUTEFLOW_API_PORT"))

    @model_validator(mode="after")
    def _client_certificate_comes_with_its_key(self) -> Settings:
        if (self.temporal_tls_client_cert is None) != (self.temporal_tls_client_key is None):
            raise ValueError("set TEMPORAL_TLS_CLIENT_CERT and TEMPORAL_TLS_CLIENT_KEY together (mutual TLS needs both)")
        return self

    @model_validator(mode="after")
    def _api_key_only_over_tls(self) -> Settings:
        if self.temporal_api_key is not None and not self.temporal_uses_tls:
            raise ValueError("TEMPORAL_API_KEY would be sent in clear: set TEMPORAL_TLS=true (or a TLS file) with it")
        return self

    @model_validator(mode="after")
    def _tokens_are_signed_safely(self) -> Settings:
        if self.token_algorithm == "HS256":
            secret = self.jwt_secret.get_secret_value().encode() if self.jwt_secret else b""
            if len(secret) < 32:
                raise ValueError("DISPUTEFLOW_TOKEN_ALGORITHM=HS256 needs DISPUTEFLOW_JWT_SECRET of at least 32 bytes")
        elif self.jwt_secret is not None:
            raise ValueError("DISPUTEFLOW_JWT_SECRET is set but tokens are EdDSA: unset it, or set "
                             "DISPUTEFLOW_TOKEN_ALGORITHM=HS256 to use a shared key on purpose")
        if self.token_ttl_hours > self.token_max_ttl_hours:
            raise ValueError(f"DISPUTEFLOW_TOKEN_TTL_HOURS ({self.token_ttl_hours:g}) is over "
                             f"DISPUTEFLOW_TOKEN_MAX_TTL_HOURS ({self.token_max_ttl_hours:g})")
        return self

    @model_validator(mode="after")
    def _webhook_is_private_and_signed(self) -> Settings:
        if self.notify_webhook_url is None:
            return self
        check_webhook_url(str(self.notify_webhook_url))
        if self.notify_webhook_secret is None:
            raise ValueError("DISPUTEFLOW_NOTIFY_WEBHOOK_URL needs DISPUTEFLOW_NOTIFY_WEBHOOK_SECRET: every delivery "
                             "is signed (Standard Webhooks)")
        if len(webhook_key_bytes(self.notify_webhook_secret.get_secret_value())) < MIN_WEBHOOK_KEY_BYTES:
            raise ValueError(f"DISPUTEFLOW_NOTIFY_WEBHOOK_SECRET must be at least {MIN_WEBHOOK_KEY_BYTES} bytes")
        return self

    @property
    def effective_public_url(self) -> str:
        if self.public_url is not None:
            return str(self.public_url).rstrip("/")
        host = self.api_host if self.api_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"http://{f'[{host}]' if ':' in host else host}:{self.api_port}"

    @property
    def temporal_uses_tls(self) -> bool:
        return self.temporal_tls or any(v is not None for v in (
            self.temporal_tls_server_ca, self.temporal_tls_client_cert, self.temporal_tls_server_name))

    @property
    def effective_codec_cors_origins(self) -> list[str]:
        if self.codec_cors_origins is not None:
            return [origin.strip().rstrip("/") for origin in self.codec_cors_origins.split(",") if origin.strip()]
        return [f"http://127.0.0.1:{self.temporal_ui_port}", f"http://localhost:{self.temporal_ui_port}"]

    @property
    def embedded_temporal(self) -> bool:
        return self.temporal_address is None

    @property
    def effective_temporal_address(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_dev_port}"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'disputeflow.db').as_posix()}"

    @property
    def temporal_db_file(self) -> Path:
        return self.data_dir / "temporal.db"


@lru_cache
def get_settings() -> Settings:
    return Settings()
