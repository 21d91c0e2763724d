"""Test-wide settings. Environment first: some libraries read it once, at import.

``huggingface_hub`` reads ``HF_ENDPOINT``, ``HF_HOME`` and ``HF_HUB_DISABLE_XET`` once, when it is imported (and
timm imports it at import time). So, before anything imports either, this file starts the suite's own Hub-compatible
server on 127.0.0.1 (``tests/hubserver.py``), points ``HF_ENDPOINT`` at it, gives the client an empty, temporary
``HF_HOME`` (the user's cache and saved token are never touched), removes any token or offline setting inherited from
the shell, and installs a guard that refuses every connection to a non-loopback address. The in-process client runs
with ``HF_HUB_DISABLE_XET=1`` (LFS uploads: the Xet transfer protocol cannot be served offline); tests of the other
paths start fresh processes with their own environment.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

if "huggingface_hub" in sys.modules:  # too late to redirect it: fail loudly rather than talk to the real Hub
    raise RuntimeError("huggingface_hub was imported before tests/conftest.py could point HF_ENDPOINT at the test Hub")

sys.path.insert(0, str(Path(__file__).parent))
import hubserver

NETWORK_VIOLATIONS = hubserver.install_network_guard()
HUB = hubserver.HubServer().start()
HF_HOME = Path(tempfile.mkdtemp(prefix="timm-recipes-hf-home-"))

for _name in (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_STORED_TOKENS_PATH",
    "HF_OIDC_RESOURCE",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_ASSETS_CACHE",
    "HUGGINGFACE_ASSETS_CACHE",
    "HF_XET_CACHE",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HUGGINGFACE_CO_STAGING",
):
    os.environ.pop(_name, None)
os.environ.update(
    {
        "HF_ENDPOINT": HUB.url,
        "HF_HOME": str(HF_HOME),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "10",
    }
)


def _cleanup() -> None:
    HUB.stop()
    shutil.rmtree(HF_HOME, ignore_errors=True)


atexit.register(_cleanup)


@pytest.fixture(scope="session")
def hub_server() -> hubserver.HubServer:
    """The suite's Hub-compatible server (``hub_server.url`` is ``HF_ENDPOINT``; ``hub_server.state`` its data)."""
    return HUB


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a whole test module.

    Its inputs are tiny, so one thread is as fast and immune to a busy machine, and bitwise comparisons (resume,
    distributed equivalence, logits from a fresh process) need the same reduction order everywhere.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def network_violations() -> list[str]:
    """Connections the network guard refused so far (a test that provokes one on purpose clears it)."""
    return NETWORK_VIOLATIONS


def pytest_sessionfinish(session, exitstatus) -> None:
    """Fail the run if any test tried to reach a host other than 127.0.0.1."""
    if NETWORK_VIOLATIONS:
        print(f"\nnetwork guard: refused connections: {sorted(set(NETWORK_VIOLATIONS))}", file=sys.stderr)
        session.exitstatus = 1
