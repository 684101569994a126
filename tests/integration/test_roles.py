"""Every route x every role: no key is 401, a key of the wrong role is 403, the right one passes.

Routes come from the live server's own OpenAPI document, so a new route without an entry in
``ALLOWED`` fails this test until someone decides who may call it.
"""

from __future__ import annotations

import re

from tests.integration.server import LiveServer

# /status is HMA's liveness probe: open, as HMA's load balancers call it without a key.
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/status")}
ALL = {"admin", "curator", "platform", "reviewer", "partner", "flagger"}

# (method, path regex) -> roles allowed besides admin (admin may call everything).
ALLOWED: list[tuple[str, str, set[str]]] = [
    ("GET", r"/metrics", set()),
    ("POST", r"/v1/hash", {"platform", "curator"}),
    ("POST", r"/v1/(match|scan)", {"platform"}),
    # -- background jobs (issue 17): platform keys, their own jobs --
    ("GET|POST", r"/v1/jobs", {"platform"}),
    ("GET|DELETE", r"/v1/jobs/\{job_id\}", {"platform"}),
    ("GET", r"/v1/banks(/\{name\}(/entries)?)?", {"curator", "reviewer"}),
    ("POST", r"/v1/banks(/\{name\}/(entries|import|withdraw))?", {"curator"}),
    ("PATCH", r"/v1/banks/\{name\}", {"curator"}),
    ("DELETE", r"/v1/banks/\{name\}(/entries/\{entry_id\})?", {"curator"}),
    ("GET|POST|PATCH|DELETE", r"/v1/(webhooks|events)(/.*)?", set()),
    ("GET|POST", r"/h/hash", {"platform", "curator"}),
    ("GET|POST", r"/m/(lookup|raw_lookup|compare)", {"platform"}),
    ("GET", r"/c/banks|/c/bank/\{bank_name\}(/content/\{content_id\})?", {"curator", "reviewer"}),
    ("POST", r"/c/banks|/c/bank/\{bank_name\}/(content|signal)", {"curator"}),
    ("PUT|DELETE", r"/c/bank/\{bank_name\}(/content/\{content_id\})?", {"curator"}),
    ("GET", r"/m/index/status", {"platform"}),
    ("GET", r"/c/(exchanges|signal_type|content_type)", {"curator", "reviewer"}),
    # -- victim portal, cases, partner feed (issue 5) --
    ("GET", r"/v1/feed", {"partner"}),
    # -- registered source photos (issue 7) --
    ("GET", r"/v1/sources(/\{source_id\})?", {"curator", "reviewer"}),
    ("POST|DELETE", r"/v1/sources(/\{source_id\})?", {"curator"}),
    # -- takedown workflow (issue 6): requests / flaggers --
    ("POST", r"/v1/takedowns", {"flagger"}),
    ("GET", r"/v1/takedowns/\{ticket\}", {"flagger", "reviewer"}),
    ("GET", r"/v1/takedowns", {"reviewer"}),
    # -- takedown workflow (issue 6): removals, statements, appeals --
    ("GET", r"/v1/removals", {"platform"}),
    ("GET", r"/v1/statements", set()),
    ("POST", r"/v1/statements/\{public_id\}/appeal-code", {"platform"}),
    # -- takedown workflow (issue 6): audit log --
    ("GET", r"/v1/audit", set()),
    # -- takedown workflow (issue 6): review --
    # -- takedown workflow (issue 6): report --
    ("GET", r"/v1/report", {"reviewer"}),
]


def allowed(method: str, path: str) -> set[str] | None:
    for methods, pattern, roles in ALLOWED:
        if re.fullmatch(methods, method) and re.fullmatch(pattern, path):
            return roles | {"admin"}
    return None


def concrete(path: str) -> str:
    # A bank that does not exist and an id that does not exist: the check under test comes
    # before any lookup, and nothing real is changed by the walk.
    path = re.sub(r"\{(name|bank_name)\}", "NO_SUCH_BANK", path)
    return re.sub(r"\{[a-z_]+\}", "1", path)


def test_every_route_and_role(live: LiveServer) -> None:
    with live.client() as anon:
        spec = anon.get("/openapi.json").json()
        routes = [
            (method.upper(), path)
            for path, ops in spec["paths"].items()
            for method in ops
            if (method.upper(), path) not in PUBLIC
        ]
        assert len(routes) >= 30, routes
        unknown = [r for r in routes if allowed(*r) is None]
        assert not unknown, f"routes with no role decision in ALLOWED: {unknown}"
        checked = 0
        for method, path in routes:
            url = concrete(path)
            r = anon.request(method, url)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            for role in sorted(ALL):
                r = anon.request(method, url, headers=live.headers(role))
                roles = allowed(method, path)
                assert roles is not None
                if role in roles:
                    assert r.status_code not in (401, 403), (method, path, role, r.text)
                    assert r.status_code < 500, (method, path, role, r.text)
                else:
                    assert r.status_code == 403, (method, path, role, r.status_code, r.text)
                checked += 1
    assert checked == len(routes) * len(ALL)
