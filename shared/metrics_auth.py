"""Who may read /metrics: anyone when OWNKEY_METRICS_TOKEN is empty, else a bearer of
that token (compared in constant time). Shared by the API and the workers' endpoint."""

from __future__ import annotations

import hmac

from pydantic import SecretStr

__all__ = ["metrics_allowed"]


def metrics_allowed(token: SecretStr, authorization: str | None) -> bool:
    expected = token.get_secret_value()
    if not expected:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), expected.encode()
    )
