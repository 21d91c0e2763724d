"""Bounded waiting for the network: ``pretrained=True`` downloads and ``publish`` never hang on a silent endpoint.

``huggingface_hub`` creates its HTTP client without a timeout (``timeout=None``) and retries timeouts and connection
errors with back-off, file after file, so an endpoint that accepts connections but never answers keeps a command
waiting for many minutes without a word, and a closed port ends, after long retries, in a message about the local
cache. Inside :func:`bounded_network`:

* every request may wait at most the time left (connect, read, write and pool timeouts are capped by it);
* the time left is ``timeout`` seconds since the endpoint last answered (any response restarts the clock, so a long
  transfer that keeps answering is never cut; one that goes silent is);
* a request is retried at most once without an answer in between;
* the failure is one :class:`NetworkError` naming what was being done, the endpoint and the cause.

``timeout`` defaults to ``$TIMM_RECIPES_HUB_TIMEOUT`` (seconds), else :data:`DEFAULT_TIMEOUT`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_TIMEOUT", "TIMEOUT_ENV", "NetworkError", "bounded_network", "network_timeout"]

TIMEOUT_ENV = "TIMM_RECIPES_HUB_TIMEOUT"
DEFAULT_TIMEOUT = 30.0
"""Seconds an endpoint may stay silent before the operation is given up."""

_LOG = logging.getLogger("timm_recipes.network")
_LOCK = threading.Lock()
_ACTIVE: list[_Watch] = []


class NetworkError(RuntimeError):
    """A network operation gave up: the endpoint did not answer in time, refused the connection, or is unreachable."""


class _GiveUp(RuntimeError):
    """Raised from the request hook to stop huggingface_hub's retries (not a type it retries)."""


@dataclass
class _Watch:
    limit: float
    deadline: float
    endpoint: str | None = None
    host: tuple[str, int] | None = None
    unanswered: dict[str, int] = field(default_factory=dict)


def network_timeout(timeout: float | None = None) -> float:
    """``timeout``, else ``$TIMM_RECIPES_HUB_TIMEOUT``, else :data:`DEFAULT_TIMEOUT`.

    Raises:
        ValueError: not a finite number > 0, naming the parameter or the variable.
    """
    name, value = ("timeout", timeout) if timeout is not None else (TIMEOUT_ENV, os.environ.get(TIMEOUT_ENV))
    if value is None or value == "":
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if isinstance(value, bool) or not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    return seconds


def _current() -> _Watch | None:
    with _LOCK:
        return _ACTIVE[-1] if _ACTIVE else None


def _on_request(request: Any) -> None:
    watch = _current()
    if watch is None:
        return
    url = request.url
    watch.endpoint = f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")
    watch.host = (url.host, url.port or (443 if url.scheme == "https" else 80))
    now = time.monotonic()
    key = f"{request.method} {url}"
    if now >= watch.deadline:
        raise _GiveUp(f"no answer for {watch.limit:g} s")
    if watch.unanswered.get(key, 0) >= 2:
        raise _GiveUp("no answer after a retry")
    watch.unanswered[key] = watch.unanswered.get(key, 0) + 1
    left = watch.deadline - now
    timeouts = dict(request.extensions.get("timeout") or {})
    request.extensions["timeout"] = {
        k: left if timeouts.get(k) is None else min(float(timeouts[k]), left)
        for k in ("connect", "read", "write", "pool")
    }


def _on_response(response: Any) -> None:
    watch = _current()
    if watch is None:
        return
    watch.unanswered.pop(f"{response.request.method} {response.request.url}", None)
    watch.deadline = time.monotonic() + watch.limit  # it answered: the clock starts again


def _install() -> None:
    """Wrap huggingface_hub's client factory so that every client it makes carries the two hooks.

    (It replaces its shared client after a connection error, so hooks added to one client would not last.)
    """
    from huggingface_hub.utils import _http

    current = getattr(_http, "_GLOBAL_CLIENT_FACTORY", _http.default_client_factory)
    if getattr(current, "_timm_recipes_bounded", False):
        return

    def factory() -> Any:
        client = current()
        hooks = client.event_hooks
        hooks.setdefault("request", []).append(_on_request)
        hooks.setdefault("response", []).append(_on_response)
        client.event_hooks = hooks
        return client

    factory._timm_recipes_bounded = True  # type: ignore[attr-defined]
    _http.set_client_factory(factory)


def _probe(host: tuple[str, int] | None) -> str | None:
    """Why a connection to ``host`` fails right away (refused, unknown name), or None when it connects or hangs."""
    if host is None:
        return None
    import socket

    try:
        socket.create_connection(host, timeout=1.0).close()
    except TimeoutError:
        return None
    except OSError as err:
        return f"{type(err).__name__}: {err.strerror or err}"
    return None


def _network_cause(err: BaseException) -> BaseException | None:
    """The network failure behind ``err`` (itself or its chain), if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, _GiveUp):
            return err
        if type(err).__name__ == "OfflineModeIsEnabled":  # HF_HUB_OFFLINE=1 and not cached: no network was tried
            return None
        module = type(err).__module__.split(".")[0]
        if module in ("httpx2", "httpx", "httpcore") and any(
            c.__name__ in ("TransportError", "TimeoutException", "NetworkError") for c in type(err).__mro__
        ):
            return err
        if isinstance(err, (ConnectionError, TimeoutError)):
            return err
        err = err.__cause__ or err.__context__
    return None


@contextmanager
def bounded_network(what: str, *, timeout: float | None = None, endpoint: str | None = None) -> Iterator[None]:
    """Run the ``huggingface_hub`` requests of the block with bounded waiting (see the module docstring).

    Args:
        what: What the block does, for the messages (e.g. ``"downloading the pretrained weights of resnet50"``).
        timeout: Seconds the endpoint may stay silent; default :func:`network_timeout`.
        endpoint: The endpoint, for the messages until the first request names it.

    Raises:
        NetworkError: the endpoint stayed silent, refused or could not be reached; names ``what``, the endpoint,
            the cause and :data:`TIMEOUT_ENV`.
    """
    limit = network_timeout(timeout)
    watch = _Watch(limit=limit, deadline=time.monotonic() + limit, endpoint=endpoint)
    _install()
    _LOG.info("%s (%s; giving up after %g s without an answer)", what, endpoint or "Hugging Face Hub", limit)
    with _LOCK:
        _ACTIVE.append(watch)
    try:
        yield
    except NetworkError:
        raise
    except Exception as err:
        cause = _network_cause(err)
        if cause is None:
            raise
        where = watch.endpoint or endpoint or "the Hub endpoint"
        refused = _probe(watch.host) if isinstance(cause, _GiveUp) else None
        if refused:
            reason = f"cannot reach the Hub at {where} ({refused})"
        elif isinstance(cause, _GiveUp) or "Timeout" in type(cause).__name__:
            reason = f"no answer from the Hub at {where} within {limit:g} s ({cause})"
        else:
            detail = " ".join(str(cause).split()) or "no details"
            reason = f"cannot reach the Hub at {where} ({type(cause).__name__}: {detail})"
        raise NetworkError(
            f"{what}: {reason}; check the network, the proxy and HF_ENDPOINT, or set {TIMEOUT_ENV} (seconds) to "
            "wait longer"
        ) from err
    finally:
        with _LOCK:
            _ACTIVE.remove(watch)
