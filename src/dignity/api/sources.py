"""Registered source photos for edited-derivative detection (role-scoped)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
