"""Errors of the Hub module: one class per thing a publisher has to fix, each with a message that says how.

All are ``RuntimeError`` subclasses (the command line reports them without a traceback). No message ever contains a
token: they name where the token came from, never its value.
"""

from __future__ import annotations

__all__ = [
    "ExportError",
    "HubAuthError",
    "HubConflictError",
    "HubConnectionError",
    "HubError",
    "HubRepoNotFoundError",
]


class ExportError(RuntimeError):
    """An export folder could not be written, or does not load back into the same outputs as its source model."""


class HubError(RuntimeError):
    """Publishing to (or reading from) the Hugging Face Hub failed."""


class HubAuthError(HubError):
    """No token, an invalid token (401) or a token without write access to the namespace (403)."""


class HubConnectionError(HubError):
    """The Hub endpoint cannot be reached (network down, wrong ``HF_ENDPOINT``, proxy, offline mode)."""


class HubRepoNotFoundError(HubError):
    """The repository does not exist, or is private and the token cannot see it."""


class HubConflictError(HubError):
    """The repository already holds weights (and ``overwrite`` is off), another architecture, or another visibility."""
