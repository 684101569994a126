"""The partner feed: case hashes and their withdrawals, for partner platforms."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
