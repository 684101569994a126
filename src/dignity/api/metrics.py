"""Prometheus metrics for one server process: requests, latencies, bank sizes, index lag, outbox,
and each background task's state.

A registry per app (not the global one) so tests can build many apps in one process. Bank sizes
and outbox depth are read at scrape time, so they are never stale. With several uvicorn workers
each process reports its own request counters (scrape each, or put a proxy in front).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from dignity.services import Services


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dignity_http_requests",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dignity_http_request_seconds",
            "HTTP request latency by route template.",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.bank_entries = Gauge(
            "dignity_bank_entries",
            "Entries per bank and status.",
            ["bank", "status"],
            registry=self.registry,
        )
        self.index_entries = Gauge(
            "dignity_index_entries", "Hashes in this process's index.", registry=self.registry
        )
        self.index_lag = Gauge(
            "dignity_index_lag_seconds",
            "Seconds since this process last caught up with the change log.",
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "dignity_outbox_depth",
            "Webhook events waiting for delivery.",
            registry=self.registry,
        )
        self.task_running = Gauge(
            "dignity_background_running",
            "1 while a background task of this process is running.",
            ["task"],
            registry=self.registry,
        )
        self.task_success = Gauge(
            "dignity_background_last_success_timestamp_seconds",
            "When a background task last succeeded (Unix time; 0: never).",
            ["task"],
            registry=self.registry,
        )
        self.task_error = Gauge(
            "dignity_background_last_error_timestamp_seconds",
            "When a background task last failed (Unix time; 0: never).",
            ["task"],
            registry=self.registry,
        )
        self.task_failures = Gauge(
            "dignity_background_failures",
            "Failed runs of a background task since the process started.",
            ["task"],
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self, services: Services) -> str:
        self.bank_entries.clear()
        for bank in services.banks.list_banks():
            self.bank_entries.labels(bank.name, "active").set(bank.active_entries)
            self.bank_entries.labels(bank.name, "withdrawn").set(bank.withdrawn_entries)
        self.index_entries.set(len(services.engine))
        self.index_lag.set(max(0.0, time.time() - services.last_refresh))
        self.outbox_depth.set(services.outbox.depth())
        for name, task in services.supervisor.status().items():
            self.task_running.labels(name).set(1 if task.running else 0)
            self.task_success.labels(name).set(task.last_success or 0)
            self.task_error.labels(name).set(task.last_error_at or 0)
            self.task_failures.labels(name).set(task.failures)
        return generate_latest(self.registry).decode()
