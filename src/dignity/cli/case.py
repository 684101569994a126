"""``dignity case ...``: victim cases (number + PIN) from the command line."""

from __future__ import annotations
