"""Encryption at rest of data source secrets (Fernet, keyed from settings)."""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _fernet() -> Fernet:
    key = settings.MLOPS_ENCRYPTION_KEY
    if not key:
        # Local installs derive a key from SECRET_KEY; production must set its own
        # (settings refuse to start without it), so rotating one does not lose the other.
        digest = hashlib.sha256(b"mlops.datasource-secret:" + settings.SECRET_KEY.encode()).digest()
        key = base64.urlsafe_b64encode(digest).decode()
    try:
        return Fernet(key)
    except ValueError:
        raise ImproperlyConfigured(
            "MLOPS_ENCRYPTION_KEY must be a Fernet key (32 url-safe base64-encoded bytes)"
        ) from None


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode() if plain else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "A data source secret cannot be decrypted: MLOPS_ENCRYPTION_KEY changed"
        ) from None
