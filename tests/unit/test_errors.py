"""Every error code dignity can produce has exactly one class, a status, an exit status and a
line in README's list of stable codes.

The codes are collected from the source, not from the classes, so a raise with a code no class
owns (or the wrong class for its code) is found without running that path: ``code="..."``
keywords, ``code`` parameters' defaults, ``{"code": ...}`` records, the HTTP layer's
``error_body("...")`` and f-string codes, expanded by ``EXPANSIONS``. Each check is a function
returning its problems, so the tests can also show that a made-up code is caught.
"""

from __future__ import annotations

import ast
import gc
import importlib
import pkgutil
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import dignity
from dignity import errors
from dignity.api.errors import install, status_for
from dignity.errors import CATEGORIES, DignityError, error_class, owners
from dignity.settings import Settings

SRC = Path(dignity.__file__).parent
README = SRC.parents[1] / "README.md"

# The f-string codes in the source, with every value their placeholder takes at its call sites.
# A settings error's code names its setting: config.<field>, one per field of Settings.
CONFIG_CODES = tuple(f"config.{name}" for name in Settings.model_fields)
EXPANSIONS: Mapping[str, tuple[str, ...]] = {
    "request.bad_{what}": ("request.bad_content_id", "request.bad_uploader"),
    "source.bad_{name}": ("source.bad_subject", "source.bad_consent_by", "source.bad_for_whom"),
    "config.{field}": CONFIG_CODES,
}
# README writes the family once.
README_FAMILIES: Mapping[str, tuple[str, ...]] = {"config.<field>": CONFIG_CODES}
_CODE = re.compile(r"[a-z_]+(\.[a-z_]+)?")


@dataclass(frozen=True)
class Site:
    """One place in the source that produces ``code``; ``callee`` is the called name, if any."""

    where: str
    code: str
    callee: str | None


def _load_all() -> None:
    # Domain classes register when their module is imported; import them all.
    for module in pkgutil.walk_packages(dignity.__path__, "dignity."):
        if module.name.endswith("__main__") or ".migrations" in module.name:
            continue
        importlib.import_module(module.name)


def _classes() -> dict[str, type[DignityError]]:
    found: dict[str, type[DignityError]] = {}
    todo: list[type[DignityError]] = [DignityError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


def _own(cls: type[DignityError]) -> tuple[str, ...]:
    codes: tuple[str, ...] = cls.__dict__.get("codes", ())
    return codes


def _template(node: ast.JoinedStr) -> str:
    parts = []
    for value in node.values:
        if isinstance(value, ast.Constant):
            parts.append(str(value.value))
        elif isinstance(value, ast.FormattedValue):
            parts.append("{" + ast.unparse(value.value) + "}")
    return "".join(parts)


def _codes_of(node: ast.expr) -> Iterator[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.JoinedStr):
        template = _template(node)
        # An unknown template is yielded as it is, so that it shows as a code no class owns.
        yield from EXPANSIONS.get(template, (template,))


def _callee(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def _defaults(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[tuple[ast.arg, ast.expr]]:
    """Each parameter of ``fn`` that has a default, with it."""
    args = fn.args
    positional = [*args.posonlyargs, *args.args]
    with_default = positional[len(positional) - len(args.defaults) :]
    named = list(zip(with_default, args.defaults, strict=True))
    keyword = zip(args.kwonlyargs, args.kw_defaults, strict=True)
    return named + [(a, d) for a, d in keyword if d is not None]


def helpers_in(sources: Iterable[str]) -> dict[str, int]:
    """Functions whose ``code`` parameter defaults to a code (error helpers such as
    ``_not_signed_in(why, code="session.missing")``), with that parameter's position."""
    helpers: dict[str, int] = {}
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                positional = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
                if positional[:1] == ["self"]:
                    positional = positional[1:]
                defaulted = {a.arg for a, d in _defaults(node) if isinstance(d, ast.Constant)}
                if "code" in positional and "code" in defaulted:
                    helpers[node.name] = positional.index("code")
    return helpers


def sites_in(source: str, where: str, helpers: Mapping[str, int]) -> list[Site]:
    """The codes that ``source`` produces: see the module docstring. A call of one of the
    ``helpers`` (see helpers_in) may pass its code by position."""
    found: list[Site] = []
    for node in ast.walk(ast.parse(source)):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Call):
            callee = _callee(node)
            for kw in node.keywords:
                if kw.arg == "code":
                    found += [Site(line, c, callee) for c in _codes_of(kw.value)]
            at = helpers.get(callee or "")
            if at is not None and len(node.args) > at:
                found += [Site(line, c, callee) for c in _codes_of(node.args[at])]
            if callee == "error_body" and node.args:
                found += [Site(line, c, None) for c in _codes_of(node.args[0])]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for arg, default in _defaults(node):
                if arg.arg == "code":
                    found += [Site(line, c, None) for c in _codes_of(default)]
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "code":
                    found += [Site(line, c, None) for c in _codes_of(value)]
    return found


def _source_files() -> Iterator[tuple[str, str]]:
    for path in sorted(SRC.rglob("*.py")):
        yield str(path.relative_to(SRC.parent)), path.read_text(encoding="utf-8")


def source_sites() -> list[Site]:
    files = list(_source_files())
    helpers = helpers_in(text for _, text in files)
    return [site for where, text in files for site in sites_in(text, where, helpers)]


def problems_of(sites: Iterable[Site], classes: Mapping[str, type[DignityError]]) -> list[str]:
    """Codes no class owns, and raises of a class with a code that another class owns."""
    problems = []
    for site in sites:
        try:
            owner = error_class(site.code)
        except LookupError:
            problems.append(f"{site.where}: {site.code!r} belongs to no error class")
            continue
        raised = classes.get(site.callee or "")
        if raised is not None and raised is not owner:
            problems.append(
                f"{site.where}: {site.code!r} raised as {raised.__name__}, "
                f"but it belongs to {owner.__name__}"
            )
    return problems


def readme_codes(text: str) -> list[str]:
    """The codes in README's "Error codes are stable" list (up to the next heading)."""
    start = text.index("Error codes are stable")
    end = text.find("\n#", start)
    section = text[start : end if end >= 0 else len(text)]
    found: list[str] = []
    for c in re.findall(r"`([^`]+)`", section):
        if c in README_FAMILIES:
            found += README_FAMILIES[c]
        elif _CODE.fullmatch(c) or "*" in c:
            found.append(c)
    return found


def readme_problems(listed: list[str], known: Iterable[str]) -> list[str]:
    known = set(known)
    problems = [f"README lists {c!r}, which no class owns" for c in listed if c not in known]
    problems += [f"README does not list {c!r}" for c in sorted(known - set(listed))]
    problems += [f"README lists {c!r} twice" for c in sorted(set(listed)) if listed.count(c) > 1]
    return problems


def _declaring(tree: ast.AST) -> set[int]:
    """The ids of the nodes in class-level ``codes = (...)``: declaring is not producing."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if isinstance(stmt, ast.Assign | ast.AnnAssign) and stmt.value is not None:
                    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                    if any(isinstance(t, ast.Name) and t.id == "codes" for t in targets):
                        ids |= {id(n) for n in ast.walk(stmt.value)}
    return ids


def unused_codes(
    sources: Iterable[tuple[str, str]], classes: Mapping[str, type[DignityError]]
) -> list[str]:
    """Codes a class owns that nothing produces: not raised, not a default, not a class raised
    without ``code=``, and not named anywhere else (the HTTP layer maps some by name)."""
    sources = list(sources)
    helpers = helpers_in(text for _, text in sources)
    used: set[str] = set()
    for where, text in sources:
        tree = ast.parse(text)
        declaring = _declaring(tree)
        used |= {site.code for site in sites_in(text, where, helpers)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and not any(k.arg == "code" for k in node.keywords):
                cls = classes.get(_callee(node) or "")
                if cls is not None and _own(cls):
                    used.add(_own(cls)[0])
            elif isinstance(node, ast.Constant) and id(node) not in declaring:
                used.add(str(node.value))
    declared = {code for cls in classes.values() for code in _own(cls)}
    return sorted(declared - used)


@pytest.fixture(scope="module")
def classes() -> dict[str, type[DignityError]]:
    _load_all()
    return _classes()


# -- the tree ---------------------------------------------------------------------------------


def test_every_code_in_the_source_belongs_to_the_class_that_raises_it(
    classes: dict[str, type[DignityError]],
) -> None:
    sites = source_sites()
    assert len({s.code for s in sites}) > 100  # the collector still finds the codes
    assert problems_of(sites, classes) == []


def test_every_class_code_is_produced_somewhere(classes: dict[str, type[DignityError]]) -> None:
    sources = list(_source_files())
    assert unused_codes(sources, classes) == []
    # ... and a code that nothing raises any more is noticed.
    edited = [(w, t.replace('code="bank.bad_format"', 'code="bank.bad_name"')) for w, t in sources]
    assert unused_codes(edited, classes) == ["bank.bad_format"]


def test_each_code_has_one_class_one_category_a_status_and_an_exit_status(
    classes: dict[str, type[DignityError]],
) -> None:
    seen: dict[str, str] = {}
    for cls in classes.values():
        for code in _own(cls):
            assert code not in seen, f"{code} in {seen[code]} and {cls.__name__}"
            seen[code] = cls.__name__
            assert [c for c in CATEGORIES if issubclass(cls, c)] != []
            assert len([c for c in CATEGORIES if issubclass(cls, c)]) == 1, cls
            assert 400 <= cls.http_status <= 599 and status_for(code) == cls.http_status
            assert cls.exit_code == (4 if issubclass(cls, errors.StorageError) else 3)
    assert seen.keys() == owners().keys()


def test_statuses_come_from_the_category() -> None:
    assert errors.BankNotFound.http_status == 404 and errors.BankExists.http_status == 409
    assert errors.MediaTooLarge.http_status == 413 and errors.MediaRefused.http_status == 422
    assert errors.UrlTimeout.http_status == 504 and errors.UrlFailed.http_status == 502
    assert errors.StorageError.http_status == 503 and errors.StorageError.exit_code == 4
    assert errors.RequestTimeout.exit_code == 3  # 503 too, but not the database


def test_a_class_takes_only_its_own_codes() -> None:
    assert errors.BankNotFound("x").code == "bank.not_found"  # the first is the default
    assert errors.BankNotFound("x", code="entry.not_found").code == "entry.not_found"
    with pytest.raises(TypeError, match="does not belong to BankNotFound"):
        errors.BankNotFound("x", code="bank.exists")
    with pytest.raises(TypeError, match="owns no error code"):
        errors.BankError("x")  # a domain, never raised itself
    with pytest.raises(TypeError, match="owns no error code"):
        errors.Conflict("x")


def test_a_code_cannot_have_two_classes() -> None:
    with pytest.raises(TypeError, match="exactly one class"):
        type("Imposter", (errors.Conflict,), {"codes": ("bank.exists",)})
    gc.collect()  # the half-made class must not linger among Conflict's subclasses
    assert error_class("bank.exists") is errors.BankExists


# -- the checks can fail ------------------------------------------------------------------------


def test_a_made_up_code_is_caught(classes: dict[str, type[DignityError]]) -> None:
    fake = """
def f(x):
    raise BankRefused("no", code="bank.made_up")
def g(why, code="case.not_found"):
    raise BankRefused("wrong class", code="bank.not_found")
def h(what):
    raise RequestRefused("no", code=f"request.odd_{what}")
def i():
    raise g("positional", "case.made_up")
"""
    problems = problems_of(sites_in(fake, "fake.py", helpers_in([fake])), classes)
    assert sorted(problems) == [
        "fake.py:3: 'bank.made_up' belongs to no error class",
        "fake.py:5: 'bank.not_found' raised as BankRefused, but it belongs to BankNotFound",
        "fake.py:7: 'request.odd_{what}' belongs to no error class",
        "fake.py:9: 'case.made_up' belongs to no error class",
    ]


def test_readme_lists_every_code_and_nothing_else(classes: dict[str, type[DignityError]]) -> None:
    del classes  # imported for its side effect: every class registered
    listed = readme_codes(README.read_text(encoding="utf-8"))
    assert readme_problems(listed, owners()) == []
    # ... and the check notices a stale, a missing and a wildcard entry.
    assert readme_problems([*listed, "bank.made_up"], owners()) == [
        "README lists 'bank.made_up', which no class owns"
    ]
    assert readme_problems([c for c in listed if c != "case.locked"], owners()) == [
        "README does not list 'case.locked'"
    ]
    with_wildcard = readme_codes("Error codes are stable: `case.*`, `dignity scan`.\n# next")
    assert readme_problems(with_wildcard, []) == ["README lists 'case.*', which no class owns"]


# -- the HTTP layer reads the class -------------------------------------------------------------


def test_http_answers_take_status_and_headers_from_the_class() -> None:
    app = FastAPI()
    install(app)

    @app.get("/locked")
    def locked() -> None:
        raise errors.RateLimited("slow down", retry_after=7)

    @app.get("/storage")
    def storage() -> None:
        raise errors.StorageError("the database is away", retry_after=2)

    @app.get("/key")
    def key() -> None:
        from dignity.keys import AuthUnauthenticated

        raise AuthUnauthenticated("no key", code="auth.missing_key")

    @app.get("/bug")
    def bug() -> None:
        raise ZeroDivisionError

    @app.get("/items")
    def items(limit: int) -> int:
        return limit

    client = TestClient(app, raise_server_exceptions=False)
    r = client.get("/locked")
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert r.json() == {
        "code": "rate.limited",
        "message": "slow down",
        "detail": {"retry_after": 7},
    }
    r = client.get("/storage")
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    r = client.get("/key")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["code"] == "auth.missing_key"
    r = client.get("/bug")
    assert (r.status_code, r.json()["code"]) == (500, "internal")
    r = client.get("/items", params={"limit": "many"})
    assert (r.status_code, r.json()["code"]) == (422, "request.invalid")
    # One detail shape for request.invalid, as the upload reader gives it: never a bare list.
    assert r.json()["detail"] == {
        "errors": [{"loc": ["query", "limit"], "msg": r.json()["detail"]["errors"][0]["msg"]}]
    }
    r = client.get("/nowhere")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = client.post("/items")
    assert (r.status_code, r.json()["code"]) == (405, "method_not_allowed")
