"""``dignity source add|list|remove``: photos registered for edited-derivative detection."""

from __future__ import annotations
