"""(skeleton: filled in by issue 6 work on statements and appeals)."""

from __future__ import annotations
