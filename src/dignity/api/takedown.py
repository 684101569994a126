"""(skeleton: filled in by issue 6's work on this module)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
