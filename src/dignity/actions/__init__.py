"""Actions: side effects of what dignity decides, sent to webhooks through a transactional outbox.

Writes that others must hear of (entries added, withdrawn or deleted, banks deleted, scans that
matched) call :func:`~dignity.actions.outbox.emit_event` inside their own transaction; a
:class:`~dignity.actions.delivery.DeliveryWorker` later POSTs each event, HMAC-signed (see
:mod:`dignity.actions.signing`), to every webhook that wants it, at least once. :func:`install`
wires this into a server process's services. This package imports no web code at import time,
so the bank service can emit events without pulling in FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dignity.api.deps import Services


def install(services: Services) -> None:
    """Give ``services`` the scan hook and the outbox depth, and run a delivery worker while
    they run: it starts with ``services.start()`` and stops before ``services.stop()`` closes
    the database."""
    from dignity.actions.delivery import DeliveryConfig, DeliveryWorker
    from dignity.actions.outbox import OutboxService, record_scan

    db = services.db
    outbox = OutboxService(db)
    worker = DeliveryWorker(db, DeliveryConfig.from_settings(services.settings))

    def on_scan(hashes: Any, outcome: Any, decision: Any, key: Any) -> None:
        record_scan(db, hashes, outcome, decision, key)

    services.on_scan = on_scan
    services.outbox_depth = outbox.depth
    start, stop = services.start, services.stop

    def start_all() -> None:
        start()
        worker.start()

    def stop_all() -> None:
        worker.stop()
        stop()

    # Instance attributes shadow the methods; setattr because mypy forbids assigning a method.
    setattr(services, "start", start_all)  # noqa: B010
    setattr(services, "stop", stop_all)  # noqa: B010


__all__ = ["install"]
