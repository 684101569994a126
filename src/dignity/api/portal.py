"""The victim portal: the on-device hashing page and accountless cases (number + PIN)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
