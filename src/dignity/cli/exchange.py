"""``dignity exchange ...``: hash exchanges (StopNCII, NCMEC, ThreatExchange, files, feeds)."""

from __future__ import annotations
