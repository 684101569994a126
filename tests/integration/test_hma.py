"""The HMA 2.0 (OpenMediaMatch) compatible routes against a live server, called the way HMA's
own clients and tests call them: query strings, multipart fields named by content type
(``photo``/``video``), JSON bodies, and HMA's response shapes and statuses.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from dignity.api import create_app
from dignity.api.deps import Services
from dignity.hashing.digests import md5_hex
from dignity.hashing.signals import hash_bytes
from dignity.keys import KeyService
from dignity.samples import encode, landscape
from dignity.settings import Settings
from dignity.storage.db import open_database
from tests.integration.server import LiveServer

# HMA's own compare specimens (test_api.py): 9 bits apart.
SPECIMEN1 = "facd8bcb2a49bcebdec1985298d5fe84bcd006c187c598c720c3c087b3fdb318"
SPECIMEN2 = "facd8bcb2a49bcebdec1985228d5ae84bcd006c187c598c720c2b087b3fdb318"
FAR = "5" * 64


def flip(hex_hash: str, bits: int) -> str:
    value = int(hex_hash, 16)
    for i in range(bits):
        value ^= 1 << (i * 7)
    return f"{value:064x}"


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return landscape(7, (480, 360))


@pytest.fixture(scope="module")
def photo(image: Image.Image) -> bytes:
    return encode(image, quality=90)


@pytest.fixture(scope="module")
def curator(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client("curator") as c:
        yield c


@pytest.fixture(scope="module")
def platform(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client("platform") as c:
        yield c


def create_bank(c: httpx.Client, name: str) -> None:
    r = c.post("/c/banks", json={"name": name})
    assert r.status_code == 201, r.text
    assert r.json() == {"matching_enabled_ratio": 1.0, "name": name}


# -- auth ----------------------------------------------------------------------------------
ROUTES = [
    ("GET", "/h/hash?url=https://example.com/a.jpg", ("platform", "curator"), "reviewer"),
    ("POST", "/h/hash", ("platform", "curator"), "reviewer"),
    ("GET", f"/m/lookup?signal_type=pdq&signal={FAR}", ("platform",), "curator"),
    ("POST", "/m/lookup", ("platform",), "curator"),
    ("GET", f"/m/raw_lookup?signal_type=pdq&signal={FAR}", ("platform",), "reviewer"),
    ("POST", "/m/compare", ("platform",), "curator"),
    ("GET", "/c/banks", ("curator", "reviewer"), "platform"),
    ("POST", "/c/banks", ("curator",), "platform"),
    ("GET", "/c/bank/NOPE", ("curator", "reviewer"), "platform"),
    ("PUT", "/c/bank/NOPE", ("curator",), "reviewer"),
    ("DELETE", "/c/bank/NOPE", ("curator",), "platform"),
    ("POST", "/c/bank/NOPE/content", ("curator",), "platform"),
    ("GET", "/m/index/status", ("platform",), "curator"),
    ("GET", "/c/exchanges", ("curator", "reviewer"), "platform"),
    ("GET", "/c/signal_type", ("curator", "reviewer"), "platform"),
    ("GET", "/c/content_type", ("curator", "reviewer"), "flagger"),
    ("POST", "/c/bank/NOPE/signal", ("curator",), "reviewer"),
]


@pytest.mark.parametrize(("method", "path", "_ok", "wrong"), ROUTES)
def test_auth_required_and_roles_enforced(
    live: LiveServer, method: str, path: str, _ok: tuple[str, ...], wrong: str
) -> None:
    with live.client() as anon:
        r = anon.request(method, path)
        assert r.status_code == 401, r.text
        assert r.json()["code"] == "auth.missing_key"
        assert r.headers["www-authenticate"] == "Bearer"
    with live.client(wrong) as c:
        r = c.request(method, path)
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "auth.forbidden"


def test_status_needs_no_key(live: LiveServer) -> None:
    # As HMA's: load balancers and liveness probes carry no key; the body is the bare word.
    r = httpx.get(live.base + "/status")
    assert (r.status_code, r.text) == (200, "I-AM-ALIVE")
    assert r.headers["content-type"].startswith("text/plain")
    with live.client("platform") as c:
        assert c.get("/status").text == "I-AM-ALIVE"


def test_status_is_503_until_the_index_is_loaded() -> None:
    # HMA answers 503 INDEX-NOT-LOADED before its matcher's index has loaded: so do we.
    from dignity.api.hma import status

    class Engine:
        loaded = False

    class Stub:
        engine = Engine()

    r = status(Stub())  # type: ignore[arg-type]
    assert (r.status_code, r.body) == (503, b"INDEX-NOT-LOADED")


# -- read-only configuration, as HMA's UI and clients read it ---------------------------------
def test_index_status(live: LiveServer, curator: httpx.Client, platform: httpx.Client) -> None:
    create_bank(curator, "INDEX_STATUS")
    # Far from every hash the other tests look up (this server is shared by the module).
    r = curator.post("/c/bank/INDEX_STATUS/signal", json={"pdq": "a" * 64})
    assert r.status_code == 200, r.text
    every = platform.get("/m/index/status")
    assert every.status_code == 200, every.text
    body = every.json()
    assert set(body) == {"pdq", "video_md5", "md5", "sha256", "vpdq"}
    for status in body.values():
        assert set(status) == {"present", "built_to", "size"}
        assert status["present"] is True and isinstance(status["built_to"], int)
        assert abs(status["built_to"] - time.time()) < 120
    assert body["pdq"]["size"] >= 1
    one = platform.get("/m/index/status", params={"signal_type": "pdq"})
    assert list(one.json()) == ["pdq"]
    bad = platform.get("/m/index/status", params={"signal_type": "tmk"})
    assert bad.status_code == 400 and bad.json()["code"] == "hash.unknown_signal"
    assert curator.delete("/c/bank/INDEX_STATUS").status_code == 200


def test_signal_and_content_types(curator: httpx.Client) -> None:
    signal_types = curator.get("/c/signal_type")
    assert signal_types.status_code == 200, signal_types.text
    assert {"name": "pdq", "enabled_ratio": 1.0} in signal_types.json()
    assert {"name": "video_md5", "enabled_ratio": 1.0} in signal_types.json()
    assert all(set(t) == {"name", "enabled_ratio"} for t in signal_types.json())
    content_types = curator.get("/c/content_type")
    assert content_types.json() == [
        {"name": "photo", "enabled": True},
        {"name": "video", "enabled": True},
    ]
    # Read-only: HMA's PUT /c/signal_type/<name> is not offered.
    assert curator.put("/c/signal_type/pdq", json={"enabled_ratio": 0}).status_code in (404, 405)


def test_exchanges_are_listed_by_name(
    live: LiveServer, curator: httpx.Client, tmp_path: Path
) -> None:
    assert curator.get("/c/exchanges").json() == []
    hashes = tmp_path / "list.txt"
    hashes.write_text("pdq " + SPECIMEN2 + "\n")
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "dignity",
            "exchange",
            "add",
            "HMA_FILE",
            "--type",
            "file",
            "--file",
            str(hashes),
        ],
        env=live.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert added.returncode == 0, added.stderr
    assert curator.get("/c/exchanges").json() == ["HMA_FILE"]  # HMA: a list of names
    assert curator.post("/c/exchanges", json={"bank": "X"}).status_code == 405  # read-only


# -- hasher --------------------------------------------------------------------------------
def test_hash_upload(platform: httpx.Client, photo: bytes) -> None:
    expected = hash_bytes(photo)
    assert expected.pdq is not None
    r = platform.post("/h/hash", files={"photo": ("a.jpg", photo, "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.json() == {"pdq": expected.pdq.hex}

    r = platform.post("/h/hash?types=pdq,md5", files={"photo": ("a.jpg", photo, "image/jpeg")})
    assert r.json() == {"pdq": expected.pdq.hex, "md5": expected.md5}

    video = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8
    r = platform.post("/h/hash", files={"video": ("v.mp4", video, "video/mp4")})
    assert r.status_code == 200, r.text
    assert r.json() == {"video_md5": md5_hex(video)}


def test_hash_bad_input_is_400(platform: httpx.Client, photo: bytes) -> None:
    jpg = ("a.jpg", photo, "image/jpeg")
    cases = [
        platform.get("/h/hash"),  # url is required
        platform.post("/h/hash"),  # no upload
        platform.post("/h/hash", files={"file": jpg}),  # field must name a content type
        platform.post("/h/hash", files=[("photo", jpg), ("photo", jpg)]),  # one file only
        platform.post("/h/hash", files={"photo": ("a.jpg", b"not an image", "image/jpeg")}),
        platform.post("/h/hash?types=video_md5", files={"photo": jpg}),  # not for photos
        platform.post("/h/hash?types=,", files={"photo": jpg}),  # empty selection
        platform.post("/h/hash", json={"url": "https://example.com/a.jpg"}),
    ]
    for r in cases:
        assert r.status_code == 400, (r.request.url, r.text)
        assert r.json()["message"]


@pytest.mark.skipif(
    importlib.util.find_spec("dignity.fetch") is None,
    reason="dignity.fetch (the SSRF-guarded URL fetcher) is not in this tree yet",
)
def test_hash_by_url_refuses_unsafe_urls(platform: httpx.Client) -> None:
    for url in ("http://127.0.0.1:1/a.jpg", "file:///etc/passwd", "ftp://example.com/a.jpg"):
        r = platform.get("/h/hash", params={"url": url, "content_type": "photo"})
        assert 400 <= r.status_code < 500, (url, r.text)
        r = platform.get("/m/lookup", params={"url": url})
        assert 400 <= r.status_code < 500, (url, r.text)
    r = platform.get("/h/hash", params={"url": "https://example.com/a", "content_type": "x"})
    assert r.status_code == 400


# -- curator: banks ------------------------------------------------------------------------
def test_bank_lifecycle(live: LiveServer, curator: httpx.Client) -> None:
    # HMA's name rule (test_api_banks.py): UPPER_WITH_UNDERSCORE, not starting with a digit.
    for name in ("01_TEST_BANK", "my_test_bank", "_HIDDEN", "A-B"):
        r = curator.post("/c/banks", json={"name": name})
        assert r.status_code == 400, (name, r.text)
    assert curator.post("/c/banks", json={}).status_code == 400
    assert (
        curator.post(
            "/c/banks", content=b"{", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )

    create_bank(curator, "LIFECYCLE_BANK")
    r = curator.post("/c/banks", json={"name": "LIFECYCLE_BANK"})
    assert r.status_code == 403  # HMA: "Bank already exists"
    r = curator.post("/c/banks", json={"name": "OFF_BANK", "enabled": False})
    assert r.status_code == 201
    assert r.json() == {"name": "OFF_BANK", "matching_enabled_ratio": 0.0}
    r = curator.post("/c/banks", json={"name": "HALF_BANK", "enabled_ratio": 0.5})
    assert r.status_code == 400

    with live.client("reviewer") as reviewer:
        listed = reviewer.get("/c/banks")
        assert listed.status_code == 200
        assert {"name": "LIFECYCLE_BANK", "matching_enabled_ratio": 1.0} in listed.json()
        r = reviewer.get("/c/bank/LIFECYCLE_BANK")
        assert r.status_code == 200
        assert r.json() == {"name": "LIFECYCLE_BANK", "matching_enabled_ratio": 1.0}
    assert curator.get("/c/bank/NO_SUCH_BANK").status_code == 404

    r = curator.put("/c/bank/LIFECYCLE_BANK", json={"enabled": False})
    assert r.status_code == 200
    assert r.json() == {"name": "LIFECYCLE_BANK", "matching_enabled_ratio": 0.0}
    r = curator.put("/c/bank/LIFECYCLE_BANK", json={"enabled_ratio": 1})
    assert r.json()["matching_enabled_ratio"] == 1.0
    assert curator.put("/c/bank/LIFECYCLE_BANK", json={"enabled_ratio": 0.5}).status_code == 400
    assert curator.put("/c/bank/LIFECYCLE_BANK", json={"name": "1_invalid"}).status_code == 400
    assert curator.put("/c/bank/NO_SUCH_BANK", json={"enabled": True}).status_code == 404
    r = curator.put("/c/bank/LIFECYCLE_BANK", json={"name": "LIFECYCLE_RENAMED"})
    assert r.json() == {"name": "LIFECYCLE_RENAMED", "matching_enabled_ratio": 1.0}
    assert curator.get("/c/bank/LIFECYCLE_BANK").status_code == 404
    r = curator.put("/c/bank/LIFECYCLE_RENAMED", json={"name": "LIFECYCLE_BANK"})
    assert r.status_code == 200

    r = curator.delete("/c/bank/LIFECYCLE_BANK")
    assert r.status_code == 200
    assert r.json() == {"message": "Done"}
    assert curator.delete("/c/bank/LIFECYCLE_BANK").status_code == 200  # HMA: idempotent
    assert curator.get("/c/bank/LIFECYCLE_BANK").status_code == 404


# -- curator content + matcher -------------------------------------------------------------
def test_add_signal_then_lookup_by_hash(curator: httpx.Client, platform: httpx.Client) -> None:
    create_bank(curator, "SIGNAL_BANK")
    r = curator.post("/c/bank/SIGNAL_BANK/signal", json={"pdq": SPECIMEN1.upper()})
    assert r.status_code == 200, r.text
    added = r.json()
    assert set(added) == {"id", "signals"}
    assert added["signals"] == {"pdq": SPECIMEN1}
    cid = added["id"]

    r = platform.get("/m/lookup", params={"signal_type": "pdq", "signal": SPECIMEN1})
    assert r.status_code == 200, r.text
    assert r.json() == {"SIGNAL_BANK": [{"bank_content_id": cid, "distance": "0"}]}
    r = platform.get("/m/lookup", params={"signal_type": "pdq", "signal": SPECIMEN2})
    assert r.json() == {"SIGNAL_BANK": [{"bank_content_id": cid, "distance": "9"}]}
    r = platform.get("/m/lookup", params={"signal_type": "pdq", "signal": FAR})
    assert r.status_code == 200 and r.json() == {}
    r = platform.get(
        "/m/lookup", params={"signal_type": "pdq", "signal": SPECIMEN1, "banks": "OTHER"}
    )
    assert r.json() == {}

    md5 = "0cc175b9c0f1b6a831c399e269772661"
    r = curator.post("/c/bank/SIGNAL_BANK/signal", json={"video_md5": md5})
    assert r.status_code == 200 and r.json()["signals"] == {"video_md5": md5}
    md5_id = r.json()["id"]
    r = platform.get("/m/lookup", params={"signal_type": "video_md5", "signal": md5})
    assert r.json() == {"SIGNAL_BANK": [{"bank_content_id": md5_id, "distance": "0"}]}

    # raw_lookup: bare ids, or with distances; optional bank filter.
    q = {"signal_type": "pdq", "signal": flip(SPECIMEN1, 3)}
    r = platform.get("/m/raw_lookup", params=q)
    assert r.status_code == 200 and r.json() == {"matches": [cid]}
    r = platform.get("/m/raw_lookup", params={**q, "include_distance": "true"})
    assert r.json() == {"matches": [{"bank_content_id": cid, "distance": "3"}]}
    r = platform.get("/m/raw_lookup", params={**q, "banks": "NON_EXISTENT_BANK"})
    assert r.json() == {"matches": []}

    # A disabled bank stops matching; enabling it again brings the match back.
    curator.put("/c/bank/SIGNAL_BANK", json={"enabled": False})
    r = platform.get("/m/lookup", params={"signal_type": "pdq", "signal": SPECIMEN1})
    assert r.json() == {}
    curator.put("/c/bank/SIGNAL_BANK", json={"enabled": True})

    # Content: get (HMA's BankContentResponse) and delete ({deleted: n}).
    r = curator.get(f"/c/bank/SIGNAL_BANK/content/{cid}", params={"include_signals": "true"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "id": cid,
        "disable_until_ts": 1,
        "original_media_uri": None,
        "bank": {"name": "SIGNAL_BANK", "matching_enabled_ratio": 1.0},
        "signals": {"pdq": SPECIMEN1},
    }
    assert curator.get("/c/bank/SIGNAL_BANK/content/999999").status_code == 404
    r = curator.delete(f"/c/bank/SIGNAL_BANK/content/{cid}")
    assert r.status_code == 200 and r.json() == {"deleted": 1}
    assert curator.delete(f"/c/bank/SIGNAL_BANK/content/{cid}").json() == {"deleted": 0}
    r = platform.get("/m/lookup", params={"signal_type": "pdq", "signal": SPECIMEN1})
    assert r.json() == {}


def test_add_content_by_upload_then_lookup_by_file(
    curator: httpx.Client, platform: httpx.Client, image: Image.Image, photo: bytes
) -> None:
    create_bank(curator, "UPLOAD_BANK")
    r = curator.post("/c/bank/UPLOAD_BANK/content", files={"photo": ("a.jpg", photo, "image/jpeg")})
    assert r.status_code == 200, r.text
    pdq = hash_bytes(photo).pdq
    assert pdq is not None
    assert r.json() == {"id": r.json()["id"], "signals": {"pdq": pdq.hex}}
    cid = r.json()["id"]

    r = platform.post("/m/lookup", files={"photo": ("a.jpg", photo, "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.json() == {"pdq": {"UPLOAD_BANK": [{"bank_content_id": cid, "distance": "0"}]}}

    # dignity extra: a turned copy is found too (all 8 dihedral PDQs are matched).
    turned = encode(image.transpose(Image.Transpose.ROTATE_90), quality=85)
    r = platform.post("/m/lookup", files={"photo": ("b.jpg", turned, "image/jpeg")})
    assert r.status_code == 200
    hits = r.json()["pdq"]["UPLOAD_BANK"]
    assert [h["bank_content_id"] for h in hits] == [cid]
    assert int(hits[0]["distance"]) <= 31

    r = platform.post("/m/lookup?banks=OTHER_BANK", files={"photo": ("a.jpg", photo, "image/jpeg")})
    assert r.json() == {"pdq": {}}
    unrelated = encode(landscape(99, (480, 360)))
    r = platform.post("/m/lookup", files={"photo": ("c.jpg", unrelated, "image/jpeg")})
    assert r.json() == {"pdq": {}}


def test_content_and_signal_bad_input_is_4xx(
    curator: httpx.Client, platform: httpx.Client, photo: bytes
) -> None:
    create_bank(curator, "BAD_INPUT_BANK")
    base = "/c/bank/BAD_INPUT_BANK"
    jpg = ("a.jpg", photo, "image/jpeg")
    cases = [
        curator.post(f"{base}/content"),  # neither url nor upload
        curator.post(f"{base}/content", files={"file": jpg}),
        curator.post(f"{base}/content", files={"photo": ("a.jpg", b"\xff\xd8junk", "image/jpeg")}),
        curator.post(f"{base}/content", json={"metadata": {"invalid_metadata": 5}}),
        curator.post(f"{base}/signal", json={}),  # HMA: "No signals given"
        curator.post(f"{base}/signal", json=["pdq"]),
        curator.post(f"{base}/signal", json={"pdq": "banana"}),
        curator.post(f"{base}/signal", json={"tmk": "00" * 32}),
        curator.post(f"{base}/signal", json={"pdq": SPECIMEN1, "video_md5": "xyz"}),
        curator.get(f"{base}/content/1", params={"signal_type": "invalid"}),
    ]
    for r in cases:
        assert r.status_code == 400, (r.request.method, r.request.url, r.text)
        assert r.json()["message"]
    # Nothing half-written: the body with one good and one bad signal added neither.
    r = platform.get(
        "/m/raw_lookup",
        params={"signal_type": "pdq", "signal": SPECIMEN1, "banks": "BAD_INPUT_BANK"},
    )
    assert r.json() == {"matches": []}
    missing = [
        curator.post("/c/bank/NO_SUCH_BANK/content", files={"photo": jpg}),
        curator.post("/c/bank/NO_SUCH_BANK/signal", json={"pdq": SPECIMEN1}),
    ]
    for r in missing:
        assert r.status_code == 404, r.text


def test_matcher_bad_input_is_400(platform: httpx.Client) -> None:
    cases = [
        platform.get("/m/lookup"),
        platform.get("/m/lookup", params={"signal": SPECIMEN1}),
        platform.get("/m/lookup", params={"signal_type": "pdq", "signal": "banana"}),
        platform.get("/m/lookup", params={"signal_type": "nope", "signal": SPECIMEN1}),
        platform.get("/m/raw_lookup", params={"signal_type": "pdq"}),
        platform.get("/m/raw_lookup", params={"signal": SPECIMEN1}),
        platform.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": "12"}),
        platform.get(
            "/m/raw_lookup",
            params={"signal_type": "pdq", "signal": SPECIMEN1, "include_distance": "maybe"},
        ),
        platform.post("/m/lookup"),
        platform.post("/m/lookup", files={"photo": ("a.jpg", b"GIF89a", "image/gif")}),
    ]
    for r in cases:
        assert r.status_code == 400, (r.request.url, r.text)


def test_compare(platform: httpx.Client) -> None:
    r = platform.post("/m/compare", json={"pdq": [SPECIMEN1, SPECIMEN2]})
    assert r.status_code == 200
    assert r.json() == {"pdq": [True, {"distance": 9}]}
    r = platform.post("/m/compare", json={"pdq": [SPECIMEN1, FAR]})
    assert r.json()["pdq"][0] is False
    md5 = "0cc175b9c0f1b6a831c399e269772661"
    r = platform.post("/m/compare", json={"video_md5": [md5, md5.upper()]})
    assert r.json() == {"video_md5": [True, {}]}
    # HMA's malformed inputs (test_api.py), plus unknown types and non-JSON.
    bad_inputs: list[object] = [
        ["banana"],
        {"pdq": "banana"},
        {"pdq": []},
        {"pdq": ["banana", "banana"]},
        {"pdq": [SPECIMEN1, SPECIMEN2, SPECIMEN1]},
        {"pdq": [SPECIMEN1, 7]},
        {"tmk": [SPECIMEN1, SPECIMEN2]},
    ]
    for body in bad_inputs:
        r = platform.post("/m/compare", json=body)
        assert r.status_code == 400, (body, r.text)
    r = platform.post("/m/compare", content=b"nope", headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_openapi_lists_hma_routes(live: LiveServer) -> None:
    paths = httpx.get(live.base + "/openapi.json").json()["paths"]
    for path in ("/h/hash", "/m/lookup", "/m/raw_lookup", "/m/compare", "/c/banks", "/status"):
        assert path in paths
    for path in ("/m/index/status", "/c/exchanges", "/c/signal_type", "/c/content_type"):
        assert path in paths
    assert "/c/bank/{bank_name}/content" in paths
    assert "/c/bank/{bank_name}/signal" in paths


# -- by URL, in process --------------------------------------------------------------------
# The live server's fetcher (rightly) refuses 127.0.0.1 and no setting can change that, so the
# URL paths are exercised in process: the real SSRF-guarded fetch_url, with its test-only
# trusted_addresses override pointed at a file server on loopback.
@pytest.fixture
def file_server(photo: bytes) -> Iterator[str]:
    video = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8
    files = {"/a.jpg": (photo, "image/jpeg"), "/v.mp4": (video, "video/mp4")}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, ctype = files.get(self.path, (b"", ""))
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", ctype or "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(
    importlib.util.find_spec("dignity.fetch") is None,
    reason="dignity.fetch (the SSRF-guarded URL fetcher) is not in this tree yet",
)
def test_by_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_server: str, photo: bytes
) -> None:
    from dignity import fetch as fetching
    from dignity.api import hma

    def trusted_fetch(services: Services, url: str) -> bytes:
        policy = fetching.FetchPolicy(
            max_bytes=services.settings.max_bytes,
            timeout_s=5,
            trusted_addresses=frozenset({ipaddress.ip_network("127.0.0.1/32")}),
        )
        return fetching.fetch_url(url, policy)

    monkeypatch.setattr(hma, "fetch", trusted_fetch)
    url = f"sqlite:///{tmp_path / 'dignity.sqlite3'}"
    db = open_database(url)
    keys = KeyService(db)
    platform = {"Authorization": f"Bearer {keys.create('platform')[1]}"}
    curator = {"Authorization": f"Bearer {keys.create('curator')[1]}"}
    db.close()
    pdq = hash_bytes(photo).pdq
    assert pdq is not None
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=url))) as c:
        r = c.get("/h/hash", params={"url": f"{file_server}/a.jpg"}, headers=platform)
        assert r.status_code == 200, r.text
        assert r.json() == {"pdq": pdq.hex}
        r = c.get("/h/hash", params={"url": f"{file_server}/v.mp4"}, headers=platform)
        assert r.status_code == 200 and set(r.json()) == {"video_md5"}
        r = c.get("/h/hash", params={"url": f"{file_server}/missing.jpg"}, headers=platform)
        assert r.status_code == 400  # HMA: a failed fetch is 400

        assert c.post("/c/banks", json={"name": "URL_BANK"}, headers=curator).status_code == 201
        r = c.post(
            "/c/bank/URL_BANK/content",
            params={"url": f"{file_server}/a.jpg", "content_type": "photo"},
            json={"metadata": {"content_id": "1197433091", "json": {"asdf": {}}}},
            headers=curator,
        )
        assert r.status_code == 200, r.text
        cid = r.json()["id"]
        assert r.json() == {"id": cid, "signals": {"pdq": pdq.hex}}

        r = c.get("/m/lookup", params={"url": f"{file_server}/a.jpg"}, headers=platform)
        assert r.status_code == 200, r.text
        assert r.json() == {"pdq": {"URL_BANK": [{"bank_content_id": cid, "distance": "0"}]}}
        # With signal_type named too, HMA elides the outer object.
        r = c.get(
            "/m/lookup",
            params={"url": f"{file_server}/a.jpg", "signal_type": "pdq"},
            headers=platform,
        )
        assert r.json() == {"URL_BANK": [{"bank_content_id": cid, "distance": "0"}]}
