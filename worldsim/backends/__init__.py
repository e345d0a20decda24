"""Backends: one interface, several ways to execute the per-frame generator step and decoder (see base.py)."""

from worldsim.backends.base import (
    BACKEND_ENV,
    BACKEND_NAMES,
    Backend,
    BackendConfig,
    BackendUnavailable,
    create_backend,
    parse_backend,
)

__all__ = ["BACKEND_ENV", "BACKEND_NAMES", "Backend", "BackendConfig", "BackendUnavailable", "create_backend",
           "parse_backend"]
