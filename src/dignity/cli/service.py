"""``dignity serve``, ``dignity key create|list|revoke`` and ``dignity db upgrade``.

``serve`` runs uvicorn over :func:`dignity.api.create_app`; with ``--workers`` > 1 each worker
process loads its own index and follows the database's change log, so a bank change made
through any of them reaches all within ``DIGNITY_INDEX_REFRESH_S``.
"""

from __future__ import annotations

import socket

import click

from dignity.cli.app import Context, cli, emit, handles_errors, pass_ctx
from dignity.keys import ROLES
from dignity.settings import config_error


@cli.command("serve")
@click.option("--host", default=None, help="Listen address (default: DIGNITY_HOST, 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Default: DIGNITY_PORT, 8080."
)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--log-level", default="info", show_default=True)
@pass_ctx
@handles_errors
def serve(ctx: Context, host: str | None, port: int | None, workers: int, log_level: str) -> None:
    """Run the HTTP API (OpenAPI at /openapi.json, docs at /docs).

    Listens on --host/--port, else DIGNITY_HOST/DIGNITY_PORT (127.0.0.1:8080).
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from dignity.api.server import GuardedH11Protocol

    s = ctx.settings
    ctx.db.migrate()  # once, here, rather than racing in every worker
    # The policy and plug-ins are checked here too, so a mistake is one clear line and exit 3
    # rather than a traceback from every worker.
    from dignity.scanning import load_policy
    from dignity.signals.runner import SignalSuite

    load_policy(ctx.settings, SignalSuite.from_settings(ctx.settings))
    config = uvicorn.Config(
        "dignity.api:app_factory",
        factory=True,
        host=host or ctx.settings.host,
        port=port or ctx.settings.port,
        workers=workers,
        log_level=log_level,
        timeout_graceful_shutdown=10,
        # Connection limits (issue 18): uvicorn's own idle timeout and connection cap, its h11
        # header size cap, and our protocol for the header and body deadlines it lacks.
        http=GuardedH11Protocol,
        timeout_keep_alive=max(1, round(s.http_keepalive_s)),
        limit_concurrency=s.http_max_connections,
        h11_max_incomplete_event_size=s.http_max_header_bytes,
        # uvicorn would take X-Forwarded-For from 127.0.0.1 as the client address, so anyone
        # reaching a local port could reset the per-address limits with a new header each time.
        # The one proxy header we trust is DIGNITY_PORTAL_CLIENT_IP_HEADER, read by the app.
        proxy_headers=False,
        # A worker busy with a million-row import can answer the supervisor's ping late; the
        # default 5 s would kill it mid-transaction (the import rolls back, nothing is lost).
        timeout_worker_healthcheck=30,
    )
    sock = _listen(config.host, config.port)
    # Accepted connections inherit TCP_NODELAY from the listening socket. Without it, worker
    # processes answer each small response ~40 ms late (Nagle meets delayed ACK): measured
    # 340 req/s with 2 workers against 1,300 with one.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if workers == 1:
        uvicorn.Server(config).run(sockets=[sock])
        return
    Multiprocess(config, sockets=[sock]).run()


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here before uvicorn starts: a port in use is one line
    (``config.port``, exit 3) rather than uvicorn's errno after "startup complete"."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = exc.strerror or str(exc)
        raise config_error(
            "port", f"cannot listen on {host}:{port}: {why} (choose another with --port)"
        ) from None
    sock.set_inheritable(True)  # the worker processes serve it
    return sock


@cli.group("key")
def key() -> None:
    """API keys: each has one role.

    \b
    platform  hash, match, scan (/v1/hash, /v1/match, /v1/scan, HMA /h/*, /m/*)
    curator   manage banks and entries (and hash, to add files)
    reviewer  read banks and entries
    partner   read /v1/feed (case hashes and withdrawals) and nothing else
    flagger   a trusted flagger (DSA Art 22): file and follow takedown requests
    admin     everything, plus /metrics, webhooks and events
    """


@key.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--name", default="", help="Who or what uses the key.")
@click.option("--rate", type=click.IntRange(1), default=None, help="Requests per minute.")
@pass_ctx
@handles_errors
def key_create(ctx: Context, role: str, name: str, rate: int | None) -> None:
    """Create a key and print {id, role, key}; the key is shown only this once."""
    info, secret = ctx.services.keys.create(role, name=name, rate_per_minute=rate)
    emit({"id": info.id, "role": info.role, "key": secret, "name": info.name})


@key.command("list")
@pass_ctx
@handles_errors
def key_list(ctx: Context) -> None:
    """List keys (never the keys themselves)."""
    for info in ctx.services.keys.list():
        emit(info.to_dict())


@key.command("revoke")
@click.argument("key_id", type=int)
@pass_ctx
@handles_errors
def key_revoke(ctx: Context, key_id: int) -> None:
    """Revoke key KEY_ID; every server refuses it within a second."""
    emit(ctx.services.keys.revoke(key_id).to_dict())


@cli.group("db")
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_ctx
@handles_errors
def upgrade(ctx: Context) -> None:
    """Run migrations up to the newest schema (dignity also does this when it opens the DB)."""
    ctx.db.migrate()
    emit({"database": ctx.settings.resolved_database_url.split("@")[-1], "status": "up to date"})
