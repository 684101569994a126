"""The composition root outside any face: a worker-like process builds the services from
Settings, starts and stops the background tasks, and sees bank changes without the HTTP app."""

from __future__ import annotations

import time

from dignity.matching.banks import NewEntry
from dignity.samples import encode, landscape
from dignity.services import CLI, SERVER_TASKS, Services, build_services
from dignity.settings import Settings


def test_services_start_run_and_stop_every_background_task(settings: Settings) -> None:
    fast = settings.model_copy(update={"index_refresh_s": 0.05, "takedown_check_s": 0.05})
    services = build_services(fast)
    services.start(background=SERVER_TASKS)
    try:
        data = encode(landscape(9), quality=90)
        pdq = services.scanner.analyze(data).hashes.pdq
        assert pdq is not None
        # A write made elsewhere (another process, the CLI) reaches this process's index
        # through its own index-refresh loop, with no request to trigger it.
        other = Services(fast, profile=CLI)
        other.banks.create_bank("b")
        other.banks.add_entries("b", [NewEntry("pdq", pdq.hex)])
        other.close()
        deadline = time.monotonic() + 10
        while not services.scanner.scan(data).outcome.matches:
            assert time.monotonic() < deadline, services.supervisor.status()
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while services.supervisor.status()["scan-log-purge"].runs == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        status = services.supervisor.status()
        for name in ("index-refresh", "source-refresh", "takedown-clock", "scan-log-purge"):
            assert status[name].running and status[name].runs >= 1, name
            assert status[name].failures == 0, status[name].last_error
        assert services.supervisor.stalled() == []
    finally:
        services.stop(timeout_s=5.0)
    assert not any(state.running for state in services.supervisor.status().values())


def test_a_cli_face_builds_only_what_it_uses(settings: Settings) -> None:
    services = Services(settings, profile=CLI)
    try:
        services.keys.list()
        built = set(vars(services))
        # Listing keys opened the database and the key service, not the index or the models.
        assert "keys" in built
        assert not {"engine", "scanner", "sources", "delivery"} & built
        assert services.engine._snapshot_dir is None  # a one-shot command writes no snapshot
    finally:
        services.close()
