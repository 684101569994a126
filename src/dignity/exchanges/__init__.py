"""Hash exchanges: fetch shared hash lists into banks, honour their withdrawals, send feedback.

Adapters (:mod:`.adapters`) run python-threatexchange's real client code for StopNCII, NCMEC,
Facebook ThreatExchange and local files, plus our own py-tx API for another dignity instance's
partner feed (:mod:`.feed_client`). :class:`~.service.ExchangeService` keeps their
configuration (credentials encrypted, :mod:`.secrets`) and applies fetches page by page with
checkpoints in the database, so an interrupted fetch resumes where it stopped.
"""

from __future__ import annotations

from dignity.exchanges.base import ExchangeError
from dignity.exchanges.service import ExchangeInfo, ExchangeService, FetchSummary

__all__ = ["ExchangeError", "ExchangeInfo", "ExchangeService", "FetchSummary"]
