"""The takedown workflow: requests and their 48-hour clock, the review queue, removals with
copy sweeps, statements of reasons and appeals, and the transparency report.

Modules: ``models`` (tables), ``clock`` (injectable time source), ``validity`` (what a request
lacks for the TAKE IT DOWN Act and DSA Art. 16; pure), ``requests`` (intake, status, escalation,
rejection, abuse flags), ``scanlog`` (hashes of what was scanned, for sweeps), ``removal``
(removal calls through the outbox, block bank, sweeps, restores), ``notices`` (statements,
appeals, the requester's outcome, DSA Transparency Database export), ``review`` (the reviewer
queue and its decisions), ``sessions`` (review UI sign-in), ``report`` (transparency figures).
:func:`install` wires the workflow into a serving process.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dignity.api.deps import Services

log = logging.getLogger("dignity.takedown")
_PURGE_EVERY_S = 24 * 3600.0


def install(services: Services) -> None:
    """Record every scan in the scan log; while the services run, a background thread
    escalates takedown requests near their deadline (every ``takedown_check_s``) and purges
    the scan log past its retention (daily; with several workers each does, harmlessly)."""
    from dignity.takedown.requests import TakedownService
    from dignity.takedown.scanlog import ScanLog

    services.scan_log = ScanLog(services.db, services.settings)
    takedowns = TakedownService(services.db, services.settings)
    stop = threading.Event()
    interval = services.settings.takedown_check_s

    def loop() -> None:
        last_purge = 0.0
        while not stop.wait(interval):
            try:
                takedowns.escalate()
            except Exception:  # a database blip must not end the loop; the next tick retries
                log.exception("takedown escalation failed")
            # The scan log keeps hashes for sweeps only as long as the retention allows.
            if time.monotonic() - last_purge >= _PURGE_EVERY_S:
                try:
                    services.scan_log.purge()
                    last_purge = time.monotonic()
                except Exception:
                    log.exception("scan log purge failed")

    thread = threading.Thread(target=loop, name="takedown-clock", daemon=True)
    start, stop_services = services.start, services.stop

    def start_all() -> None:
        start()
        thread.start()

    def stop_all() -> None:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=5)
        stop_services()

    setattr(services, "start", start_all)  # noqa: B010
    setattr(services, "stop", stop_all)  # noqa: B010
