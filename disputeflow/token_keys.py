"""The keys of the API's bearer tokens: who signs (the private key), what the API verifies with.

EdDSA (Ed25519) by default: only the issuer of tokens (`disputeflow token`, or an identity
provider) holds the private key; the API holds public keys only, from

1. `DISPUTEFLOW_TOKEN_JWKS_URL`: a JWKS fetched (and cached) with `jwt.PyJWKClient`; or
2. `DISPUTEFLOW_TOKEN_JWKS_FILE`: a local JWKS; or
3. the dev default: the public half of the signing key file
   (`$DISPUTEFLOW_DATA_DIR/keys/token-signing-key.pem`, generated 0600 on first use), for one machine.

`disputeflow token-keys` prints the public JWKS of the signing key, to publish or copy to the API
hosts. Each token names its key (`kid`: the RFC 7638 thumbprint), so a JWKS may hold the old and
the new key during a rotation. HS256 with a shared key is possible only when configured on purpose
(`DISPUTEFLOW_TOKEN_ALGORITHM=HS256`, a key of at least 32 bytes; checked by the settings).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from disputeflow.keyfiles import KEYS_FOLDER, read_or_create
from disputeflow.settings import Settings

SIGNING_KEY_FILE = "token-signing-key.pem"


class TokenKeyError(ValueError):
    """The token keys cannot be read or used as configured."""


class TokenKeyUnavailable(Exception):
    """The JWKS URL did not answer: no token can be checked right now."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint of the public key."""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": _b64url(_raw_public(key))},
                           separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(_raw_public(key)), "kid": key_id(key),
            "alg": "EdDSA", "use": "sig"}


def _new_private_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def signing_key_file(settings: Settings) -> Path:
    return settings.token_signing_key_file or settings.data_dir / KEYS_FOLDER / SIGNING_KEY_FILE


def load_private_key(settings: Settings) -> Ed25519PrivateKey:
    """The Ed25519 signing key; the dev default file is generated on first use."""
    path = signing_key_file(settings)
    try:
        pem = read_or_create(path, _new_private_pem) if settings.token_signing_key_file is None else path.read_bytes()
    except OSError as error:
        raise TokenKeyError(f"token signing key {path}: {error.strerror}") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise TokenKeyError(f"token signing key {path}: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise TokenKeyError(f"token signing key {path}: an Ed25519 key is needed, got {type(key).__name__}")
    return key


@dataclass(frozen=True)
class Signer:
    algorithm: str
    key: Any  # Ed25519PrivateKey, or the HS256 secret
    kid: str | None

    def sign(self, claims: dict[str, Any]) -> str:
        headers = {"kid": self.kid} if self.kid else None
        return jwt.encode(claims, self.key, algorithm=self.algorithm, headers=headers)


def signer(settings: Settings) -> Signer:
    if settings.token_algorithm == "HS256":
        assert settings.jwt_secret is not None  # the settings refuse HS256 without a long enough key
        return Signer("HS256", settings.jwt_secret.get_secret_value().encode(), None)
    key = load_private_key(settings)
    return Signer("EdDSA", key, key_id(key.public_key()))


def public_jwks(settings: Settings) -> dict[str, Any]:
    return {"keys": [public_jwk(load_private_key(settings).public_key())]}


CACHE_SECONDS = 60  # how long a verified token is taken on trust (never past its expiry)
CACHE_SIZE = 4096  # tokens remembered, the least recently used forgotten first


class Verifier:
    """Finds the key a token was signed with, among the configured public keys."""

    def __init__(self, settings: Settings) -> None:
        self.algorithm = settings.token_algorithm
        self.issuer, self.audience = settings.token_issuer, settings.token_audience
        self.max_lifetime_seconds = int(settings.token_max_ttl_hours * 3600)
        self._client: jwt.PyJWKClient | None = None
        self._keys: dict[str | None, Any] = {}
        self._verified: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()
        self._lock = threading.Lock()
        if self.algorithm == "HS256":
            assert settings.jwt_secret is not None
            self._keys = {None: settings.jwt_secret.get_secret_value().encode()}
        elif settings.token_jwks_url is not None:
            self._client = jwt.PyJWKClient(str(settings.token_jwks_url), cache_keys=True, lifespan=300, timeout=5)
        elif settings.token_jwks_file is not None:
            self._keys = _read_jwks(settings.token_jwks_file)
        else:
            public = load_private_key(settings).public_key()
            self._keys = {key_id(public): public}

    def key_for(self, token: str) -> Any:
        """The verifying key the token's header names; `jwt.InvalidTokenError` when none does."""
        if self._client is not None:
            try:
                return self._client.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientConnectionError as error:
                raise TokenKeyUnavailable(f"the token keys could not be fetched: {error}") from None
            except jwt.PyJWKClientError as error:
                raise jwt.InvalidTokenError(str(error)) from None
        if self.algorithm == "HS256":
            return self._keys[None]
        kid = jwt.get_unverified_header(token).get("kid")
        if kid in self._keys:
            return self._keys[kid]
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise jwt.InvalidTokenError("no key with the token's kid")

    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims: signature, algorithm, issuer, audience, expiry and lifetime.

        A token verified in the last `CACHE_SECONDS` is not verified again (a person's console or
        client sends the same token with every request; checking an Ed25519 signature costs more
        than the rest of a small request), until it expires: a removed key stops its tokens within
        that minute, expiry at once."""
        now = time.time()
        with self._lock:
            known = self._verified.get(token)
            if known is not None:
                payload, until = known
                if now < until:
                    self._verified.move_to_end(token)
                    return dict(payload)
                del self._verified[token]
        payload = self._verify(token)
        with self._lock:
            self._verified[token] = (payload, min(now + CACHE_SECONDS, float(payload["exp"])))
            while len(self._verified) > CACHE_SIZE:
                self._verified.popitem(last=False)
        return dict(payload)

    def _verify(self, token: str) -> dict[str, Any]:
        payload = jwt.decode(
            token, self.key_for(token), algorithms=[self.algorithm], issuer=self.issuer, audience=self.audience,
            options={"require": ["sub", "exp", "iat", "iss", "aud"]},
        )
        if int(payload["exp"]) - int(payload["iat"]) > self.max_lifetime_seconds:
            raise jwt.InvalidTokenError("the token lives longer than the API accepts")
        return payload


def _read_jwks(path: Path) -> dict[str | None, Any]:
    try:
        keyset = jwt.PyJWKSet.from_json(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise TokenKeyError(f"token JWKS file {path}: {error.strerror}") from None
    except (jwt.PyJWKSetError, jwt.PyJWKError, ValueError) as error:
        raise TokenKeyError(f"token JWKS file {path}: {error}") from None
    keys = {jwk.key_id: jwk.key for jwk in keyset.keys if isinstance(jwk.key, Ed25519PublicKey)}
    if not keys:
        raise TokenKeyError(f"token JWKS file {path}: no Ed25519 public key")
    return keys
