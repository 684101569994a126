"""Actions: side effects of what dignity decides, sent to webhooks through a transactional outbox.

Writes that others must hear of (entries added, withdrawn or deleted, banks deleted, scans that
matched) call :func:`~dignity.actions.outbox.emit_event` inside their own transaction; a
:class:`~dignity.actions.delivery.DeliveryWorker` later POSTs each event, HMAC-signed (see
:mod:`dignity.actions.signing`), to every webhook that wants it, at least once. The composition
root (:mod:`dignity.services`) runs the delivery threads under its supervisor. This package
imports no web code, so the bank service can emit events without pulling in FastAPI.
"""
