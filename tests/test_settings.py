"""Configuration: the embedded defaults, overrides from the environment, the signing key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import AliasChoices

from disputeflow.settings import Settings

# Every environment variable Settings reads, so the host's environment cannot leak into a test.
ENV_VARS = [
    name
    for field in Settings.model_fields.values()
    if isinstance(field.validation_alias, AliasChoices)
    for name in field.validation_alias.choices
]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def load() -> Settings:
    return Settings(_env_file=None)  # no .env either


def test_defaults_run_everything_embedded(env: pytest.MonkeyPatch) -> None:
    settings = load()
    assert settings.embedded_temporal
    assert settings.effective_temporal_address == "127.0.0.1:7233"
    assert settings.temporal_namespace == "default"
    assert settings.temporal_task_queue == "disputeflow-cases"
    assert (settings.temporal_dev_port, settings.temporal_ui_port) == (7233, 8233)
    assert settings.data_dir == Path("var")
    assert settings.effective_database_url == "sqlite:///var/disputeflow.db"
    assert settings.temporal_db_file == Path("var/temporal.db")
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8000)
    assert settings.jwt_secret is None and settings.token_algorithm == "EdDSA"
    assert (settings.token_issuer, settings.token_audience) == ("disputeflow", "disputeflow-api")
    assert settings.token_ttl_hours == settings.token_max_ttl_hours == 12
    assert settings.policy_file.is_file()


def test_environment_overrides(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    overrides = {
        "TEMPORAL_ADDRESS": "temporal.internal:7233",
        "TEMPORAL_NAMESPACE": "hotline-prod",
        "TEMPORAL_TASK_QUEUE": "cases-v2",
        "TEMPORAL_DEV_PORT": "17233",
        "TEMPORAL_UI_PORT": "18233",
        "DATABASE_URL": "postgresql+psycopg://disputeflow:secret@db.internal:5432/disputeflow",
        "DISPUTEFLOW_DATA_DIR": str(tmp_path / "data"),
        "DISPUTEFLOW_POLICY_FILE": str(tmp_path / "policy.toml"),
        "DISPUTEFLOW_TOKEN_ALGORITHM": "HS256",
        "DISPUTEFLOW_JWT_SECRET": "s3cret-" + "k" * 32,
        "DISPUTEFLOW_TOKEN_TTL_HOURS": "8",
        "DISPUTEFLOW_MAX_BODY_BYTES": "1024",
        "DISPUTEFLOW_API_HOST": "0.0.0.0",
        "DISPUTEFLOW_API_PORT": "9000",
    }
    for name, value in overrides.items():
        env.setenv(name, value)

    settings = load()
    assert not settings.embedded_temporal
    assert settings.effective_temporal_address == "temporal.internal:7233"
    assert settings.temporal_namespace == "hotline-prod"
    assert settings.temporal_task_queue == "cases-v2"
    assert (settings.temporal_dev_port, settings.temporal_ui_port) == (17233, 18233)
    assert settings.effective_database_url == overrides["DATABASE_URL"]
    assert settings.data_dir == tmp_path / "data"
    assert settings.temporal_db_file == tmp_path / "data" / "temporal.db"
    assert settings.policy_file == tmp_path / "policy.toml"
    assert settings.token_algorithm == "HS256" and settings.jwt_secret.get_secret_value() == "s3cret-" + "k" * 32
    assert (settings.token_ttl_hours, settings.max_body_bytes) == (8, 1024)
    assert (settings.api_host, settings.api_port) == ("0.0.0.0", 9000)


def test_data_dir_moves_the_sqlite_database(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("DISPUTEFLOW_DATA_DIR", str(tmp_path))
    settings = load()
    assert settings.effective_database_url == f"sqlite:///{tmp_path.as_posix()}/disputeflow.db"
    assert settings.temporal_db_file == tmp_path / "temporal.db"


def test_dev_port_moves_the_embedded_address(env: pytest.MonkeyPatch) -> None:
    env.setenv("TEMPORAL_DEV_PORT", "17233")
    assert load().effective_temporal_address == "127.0.0.1:17233"


def test_signing_key_is_generated_once_and_kept(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from disputeflow.token_keys import load_private_key, signer

    env.setenv("DISPUTEFLOW_DATA_DIR", str(tmp_path / "data"))
    first = signer(load())
    assert first.algorithm == "EdDSA"
    key_file = tmp_path / "data" / "keys" / "token-signing-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    # Another process (a fresh Settings) finds the same key: tokens survive a restart.
    assert signer(load()).kid == first.kid
    assert load_private_key(load()).public_key() == first.key.public_key()
