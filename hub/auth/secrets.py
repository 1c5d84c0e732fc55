"""Client secrets: random, shown once, stored only as an scrypt hash."""

from __future__ import annotations

import base64
import functools
import secrets

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

# n=2**14 costs ~16 MiB and tens of ms per check: cheap for one token request,
# ruinous for an offline guesser of a leaked table.
_N, _R, _P, _LEN = 2**14, 8, 1, 32
SECRET_PREFIX = "hubsec_"


def new_client_id(platform: bool) -> str:
    return ("plat_" if platform else "cli_") + secrets.token_hex(12)


def new_client_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = Scrypt(salt=salt, length=_LEN, n=_N, r=_R, p=_P).derive(secret.encode())
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def check_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        Scrypt(salt=_unb64(salt), length=_LEN, n=int(n), r=int(r), p=int(p)).verify(
            secret.encode(), _unb64(digest)
        )
        return True
    except (InvalidKey, ValueError):
        return False


@functools.cache
def _dummy_hash() -> str:
    return hash_secret(secrets.token_urlsafe(8))


def burn_time(secret: str) -> None:
    """Spend what a real check costs, so timing does not tell which client ids exist."""
    check_secret(secret, _dummy_hash())
