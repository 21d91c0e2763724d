"""Test-wide settings. Environment first: some libraries read it once, at import."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
