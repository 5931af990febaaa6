"""Who may join which room under which name: the hub's token checks, free of I/O.

The sans-I/O core (:class:`hub.rooms.Hub`) calls :meth:`Authorizer.authorize`
for every join; a refusal becomes ``unauthorized`` and close 1008. Two kinds:

* :class:`SharedSecret` (``fer-hub --token SECRET``): one secret for
  everybody. Whoever has it may take any free name in any room; for small,
  trusted setups.
* :class:`JwtAuthorizer` (``fer-hub --jwt-secret-file PATH`` or
  ``--jwt-public-key PATH``): each member carries a signed JWT whose ``sub``
  is the name it may use, with a required ``exp`` and an optional ``rooms``
  list. Verified with PyJWT, accepting the one configured algorithm only
  (``alg: none`` and every other algorithm are refused).

How an operator mints a token (``fer-hub token`` does this)::

    key = JwtKey.from_secret_file(Path("hub.secret"))
    token = mint_token(key, sub="ada", rooms=["lobby"], ttl=parse_duration("7d"))

``authorize(token, user, room)`` checks one (token, name, room) triple and
nothing else, so a later rename or room change can be checked the same way.
Reading the key files happens once, at start-up, in :class:`JwtKey`.
"""

from __future__ import annotations

import dataclasses
import hmac
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import jwt

__all__ = [
    "DEFAULT_LEEWAY",
    "MIN_SECRET_BYTES",
    "Authorizer",
    "JwtAuthorizer",
    "JwtKey",
    "KeyFileError",
    "SharedSecret",
    "Unauthorized",
    "mint_token",
    "parse_duration",
]

#: Seconds of clock difference tolerated for ``exp``, ``nbf`` and ``iat``.
DEFAULT_LEEWAY: Final = 30.0
#: Shortest HS256 secret accepted: RFC 7518 3.2 asks for at least the hash size.
MIN_SECRET_BYTES: Final = 32


class Unauthorized(Exception):
    """A join is refused; the message says why, for the client's error frame."""


class KeyFileError(ValueError):
    """A key file is missing, unreadable, too short or of an unsupported type."""


class Authorizer(Protocol):
    """What the core asks before it lets a client in."""

    def authorize(self, token: str | None, user: str, room: str) -> None:
        """Return if ``token`` lets ``user`` be in ``room``; raise :exc:`Unauthorized` if not."""
        ...


class SharedSecret:
    """``--token``: every join carries the same secret. Weaker: names are not bound."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def authorize(self, token: str | None, user: str, room: str) -> None:
        if token is None or not hmac.compare_digest(token.encode(), self._secret):
            raise Unauthorized("wrong or missing token")


@dataclasses.dataclass(frozen=True)
class JwtKey:
    """A key to verify (and, with the secret or a private key, mint) tokens with."""

    algorithm: str  # "HS256", "RS256" or "ES256"
    verifying: Any  # bytes for HS256, a cryptography public key otherwise
    signing: Any = None  # bytes for HS256, a cryptography private key, or None

    @classmethod
    def from_secret_file(cls, path: Path) -> JwtKey:
        """HS256 with the secret in ``path`` (one trailing newline ignored)."""
        secret = _read(path).removesuffix(b"\n").removesuffix(b"\r")
        if len(secret) < MIN_SECRET_BYTES:
            raise KeyFileError(
                f"{path}: the secret has {len(secret)} bytes; HS256 needs at least"
                f" {MIN_SECRET_BYTES} (e.g. openssl rand -base64 48 > {path})"
            )
        return cls("HS256", secret, secret)

    @classmethod
    def from_public_key_file(cls, path: Path) -> JwtKey:
        """RS256 (RSA key) or ES256 (P-256 key) with the PEM public key in ``path``."""
        serialization, rsa, ec = _crypto()
        data = _read(path)
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise KeyFileError(f"{path}: not a PEM public key: {exc}") from None
        return cls(_algorithm(key, rsa, ec, path), key)

    @classmethod
    def from_private_key_file(cls, path: Path) -> JwtKey:
        """A PEM private key (RSA or P-256) that signs; for ``fer-hub token``."""
        serialization, rsa, ec = _crypto()
        data = _read(path)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{path}: not an unencrypted PEM private key: {exc}") from None
        return cls(_algorithm(key, rsa, ec, path), key.public_key(), key)


class JwtAuthorizer:
    """Signed per-user tokens: ``sub`` is the name, ``exp`` required, ``rooms`` optional.

    Refused (:exc:`Unauthorized`): no token, a malformed one, a bad
    signature, any ``alg`` but the configured one (``none`` included), expired,
    not yet valid (``nbf``, or ``iat`` in the future), ``sub`` other than the
    name asked for, a room outside ``rooms``. ``leeway`` seconds of clock
    difference are tolerated.
    """

    def __init__(self, key: JwtKey, leeway: float = DEFAULT_LEEWAY) -> None:
        self.key = key
        self.leeway = leeway

    def authorize(self, token: str | None, user: str, room: str) -> None:
        claims = self.claims(token)
        if claims["sub"] != user:
            raise Unauthorized(f"the token is for {claims['sub']!r}, not {user!r}")
        rooms = claims.get("rooms")
        if rooms is not None and room not in rooms:
            raise Unauthorized(f"the token does not allow room {room!r}")

    def claims(self, token: str | None) -> dict[str, Any]:
        """Verify ``token`` and return its claims; raise :exc:`Unauthorized` otherwise."""
        if token is None:
            raise Unauthorized("this hub needs a signed token (fer-tui --token)")
        try:
            claims = jwt.decode(
                token,
                self.key.verifying,
                algorithms=[self.key.algorithm],
                options={"require": ["exp", "sub"]},
                leeway=self.leeway,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("the token is not valid yet (nbf or iat)") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthorized(f"the token must be signed with {self.key.algorithm}") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("the token's signature is invalid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"malformed token: {exc}") from None
        rooms = claims.get("rooms")
        if not isinstance(claims["sub"], str) or not (
            rooms is None or (isinstance(rooms, list) and all(isinstance(r, str) for r in rooms))
        ):
            raise Unauthorized("malformed token: sub must be a string, rooms a list of strings")
        return claims


def mint_token(
    key: JwtKey,
    sub: str,
    ttl: float,
    rooms: Sequence[str] | None = None,
    now: float | None = None,
) -> str:
    """A token for ``sub`` valid for ``ttl`` seconds from ``now``, in ``rooms`` if given."""
    if key.signing is None:
        raise KeyFileError("minting needs the secret or the private key, not a public key")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": sub, "iat": issued, "exp": issued + int(ttl)}
    if rooms is not None:
        claims["rooms"] = list(rooms)
    return jwt.encode(claims, key.signing, algorithm=key.algorithm)


_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")
_UNIT_SECONDS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"30m"``, ``"12h"``, ``"7d"`` or ``"2w"``; ``ValueError`` otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"not a positive duration like 90s, 30m, 12h, 7d: {text!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from None


def _crypto() -> tuple[Any, Any, Any]:
    """``cryptography``'s modules for RS256/ES256, or a clear error where it is missing."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
    except ImportError:
        raise KeyFileError(
            "RS256/ES256 keys need the cryptography package: pip install cryptography"
        ) from None
    return serialization, rsa, ec


def _algorithm(key: Any, rsa: Any, ec: Any, path: Path) -> str:
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        if key.key_size < 2048:
            raise KeyFileError(f"{path}: RSA keys need at least 2048 bits, not {key.key_size}")
        return "RS256"
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyFileError(f"{path}: ES256 needs a P-256 key, not {key.curve.name}")
        return "ES256"
    raise KeyFileError(f"{path}: only RSA (RS256) and P-256 (ES256) keys are supported")
