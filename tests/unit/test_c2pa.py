"""C2PA check: the shared Content Credentials fixtures, files we sign here with a throwaway test
CA (every container c2pa reads, remote and compressed manifests, ingredients, tampering), hostile
bytes, offline reading proved against a proxy that records every connection, the byte pre-check
against the library itself, and the ingredient walk on hand-built manifest stores."""

from __future__ import annotations

import datetime
import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import c2pa  # type: ignore[import-untyped]
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image, PngImagePlugin

import dignity.signals.c2pa as c2pa_check
from dignity.media import Media, decode
from dignity.samples import encode, landscape
from dignity.settings import Settings
from dignity.signals.base import ProvenanceCheck
from dignity.signals.c2pa import C2paCheck, create, may_carry_c2pa, report_from_store
from tests.conftest import shared_fixture

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
MIME = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
}
FIXTURES = ("A.jpg", "C.jpg", "C_with_CAWG_data.jpg", "XCA.jpg", "cloud.jpg")
OFFLINE = {
    "core": {"allowed_network_hosts": []},
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
}


def fixture(name: str) -> Media:
    return decode(shared_fixture("c2pa", name).read_bytes())


@pytest.fixture(scope="module")
def check() -> C2paCheck:
    return C2paCheck()


# -- signing synthetic files -------------------------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dignity tests"),
        ]
    )


def _usage(*, sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not sign,
        crl_sign=not sign,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca_and_signer(name: str) -> tuple[bytes, bytes, bytes]:
    """A throwaway CA and an ES256 leaf it issued, valid for a week (c2pa refuses self-signed
    signers): the CA's PEM, the leaf's chain (leaf, then CA) and the leaf's private key."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{name} root"))
        .issuer_name(_name(f"{name} root"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(sign=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{name} signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return ca_pem, leaf.public_bytes(serialization.Encoding.PEM) + ca_pem, pem


@pytest.fixture(scope="module")
def signer() -> Iterator[Any]:
    """An ES256 signer whose certificate a throwaway CA issued. No timestamp authority:
    signing stays offline."""
    _, chain, pem = make_ca_and_signer("dignity test")
    made = c2pa.Signer.from_info(c2pa.C2paSignerInfo(b"es256", chain, pem, None))
    yield made
    made.close()


def manifest(source_type: str | None = "trainedAlgorithmicMedia", **extra: Any) -> dict[str, Any]:
    action: dict[str, Any] = {"action": "c2pa.created"}
    if source_type is not None:
        action["digitalSourceType"] = IPTC + source_type
    return {
        "claim_generator_info": [{"name": "dignity-test-generator", "version": "1.0"}],
        "title": "synthetic landscape",
        "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [action]}}],
        **extra,
    }


def plain(fmt: str, seed: int = 1) -> bytes:
    return encode(landscape(seed, (160, 120)), fmt)


@dataclass
class Signing:
    signer: Any

    def sign(
        self,
        fmt: str,
        definition: dict[str, Any] | None = None,
        *,
        source: bytes | None = None,
        ingredient: bytes | None = None,
        remote_url: str | None = None,
        compress: bool = False,
    ) -> bytes:
        settings: dict[str, Any] = {
            **OFFLINE,
            "builder": {"thumbnail": {"enabled": False}},
            "core": {"allowed_network_hosts": [], "prefer_compress_manifests": compress},
        }
        with c2pa.Context.from_dict(settings) as context:
            builder = c2pa.Builder(definition or manifest(), context=context)
            if ingredient is not None:
                builder.add_ingredient(
                    {"title": "parent", "relationship": "parentOf"},
                    "image/jpeg",
                    io.BytesIO(ingredient),
                )
                builder.set_intent(c2pa.C2paBuilderIntent.EDIT)
            if remote_url is not None:
                builder.set_no_embed()
                builder.set_remote_url(remote_url)
            out = io.BytesIO()
            builder.sign(self.signer, MIME[fmt], io.BytesIO(source or plain(fmt)), out)
            builder.close()
            return out.getvalue()


@pytest.fixture(scope="module")
def signing(signer: Any) -> Signing:
    return Signing(signer)


def library_finds(data: bytes, mime: str) -> str:
    """What c2pa itself finds in ``data``, offline: a readable manifest "store", a "remote"
    reference, "none", or an "error" (a broken C2PA box, which holds nothing to report)."""
    with c2pa.Context.from_dict(OFFLINE) as context:
        try:
            reader = c2pa.Reader.try_create(mime, io.BytesIO(data), None, context)
        except c2pa.C2paError as exc:
            return "remote" if str(exc).startswith("Remote") else "error"
        if reader is None:
            return "none"
        reader.close()
        return "store"


# -- the shared fixtures -----------------------------------------------------------------------


def test_valid_ai_manifest_is_evidence(check: C2paCheck) -> None:
    report = check.check(fixture("C.jpg"))
    assert report.data["state"] == "valid"
    assert report.data["digital_source_types"] == ["algorithmicMedia"]
    assert report.data["claim_generator"] == "make_test_images/0.26.0 c2pa-rs/0.26.0"
    assert report.data["signer"] == "C2PA Test Signing Cert"
    assert report.data["active_manifest"].startswith("contentauth:urn:uuid:")
    assert [e.source for e in report.evidence] == ["c2pa"]
    detail = report.evidence[0].detail
    assert "C2PA manifest (valid)" in detail and "algorithmicMedia" in detail
    assert "make_test_images/0.26.0" in detail


def test_camera_capture_is_no_evidence(check: C2paCheck) -> None:
    report = check.check(fixture("C_with_CAWG_data.jpg"))
    assert report.data["state"] == "valid"
    assert report.data["digital_source_types"] == ["digitalCapture"]
    assert report.data["claim_generator"] == "c2pa cawg test/0.58.0"
    assert report.evidence == ()


def test_no_manifest(check: C2paCheck) -> None:
    report = check.check(fixture("A.jpg"))
    assert report.data == {
        "state": "none",
        "claim_generator": None,
        "digital_source_types": [],
        "validation_codes": [],
        "vendor": None,
        "generator": None,
    }
    assert report.evidence == ()


def test_remote_manifest_is_reported_not_fetched(check: C2paCheck) -> None:
    report = check.check(fixture("cloud.jpg"))
    assert report.data["state"] == "remote"
    assert report.data["remote_url"].startswith("https://cai-manifests.adobe.com/manifests/")
    assert report.data["digital_source_types"] == [] and report.evidence == ()


def test_manifest_failing_validation(check: C2paCheck) -> None:
    report = check.check(fixture("XCA.jpg"))
    assert report.data["state"] == "invalid"
    assert report.data["validation_state"] == "Invalid"
    assert "assertion.dataHash.mismatch" in report.data["validation_codes"]
    assert report.evidence == ()  # its actions declare no source type


@pytest.mark.parametrize("name", FIXTURES)
def test_reports_are_json(check: C2paCheck, name: str) -> None:
    data = check.check(fixture(name)).data
    assert json.loads(json.dumps(data)) == data
    assert len(json.dumps(data)) < 2000  # no thumbnails, no manifest dumps


# -- files signed here -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF"])
def test_every_container(check: C2paCheck, signing: Signing, fmt: str) -> None:
    media = decode(signing.sign(fmt))
    assert media.format == fmt
    report = check.check(media)
    assert report.data["state"] == "valid", report.data
    assert report.data["digital_source_types"] == ["trainedAlgorithmicMedia"]
    assert report.data["claim_generator"] == "dignity-test-generator/1.0"
    assert report.data["signer"] == "dignity tests"
    assert "signingCredential.untrusted" in report.data["validation_codes"]
    assert len(report.evidence) == 1
    assert "(valid) declares digitalSourceType trainedAlgorithmicMedia" in report.evidence[0].detail


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF"])
def test_remote_reference_in_every_container(check: C2paCheck, signing: Signing, fmt: str) -> None:
    url = "https://manifests.invalid/dignity-test.c2pa"
    media = decode(signing.sign(fmt, remote_url=url))
    assert b"jumb" not in media.data  # nothing embedded: only the XMP reference points at it
    report = check.check(media)
    assert report.data["state"] == "remote"
    assert report.data["remote_url"] == url


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_compressed_manifest(check: C2paCheck, signing: Signing, fmt: str) -> None:
    data = signing.sign(fmt, compress=True)
    assert b"brob" in data and b"c2pa.actions" not in data  # the store really is compressed
    report = check.check(decode(data))
    assert report.data["state"] == "valid"
    assert report.data["digital_source_types"] == ["trainedAlgorithmicMedia"]
    assert len(report.evidence) == 1


def test_ai_term_only_in_an_ingredient(check: C2paCheck, signing: Signing) -> None:
    generated = signing.sign("JPEG")
    edit = {"claim_generator_info": [{"name": "dignity-test-editor", "version": "2"}]}
    edited = signing.sign("JPEG", edit, source=plain("JPEG", seed=2), ingredient=generated)
    report = check.check(decode(edited))
    assert report.data["state"] == "valid"
    assert report.data["claim_generator"] == "dignity-test-editor/2"
    assert report.data["digital_source_types"] == ["trainedAlgorithmicMedia"]
    assert len(report.evidence) == 1
    assert "in an ingredient's manifest" in report.evidence[0].detail


def test_edited_capture_is_no_evidence(check: C2paCheck, signing: Signing) -> None:
    captured = signing.sign("JPEG", manifest("digitalCapture"))
    edit = {"claim_generator_info": [{"name": "dignity-test-editor", "version": "2"}]}
    edited = signing.sign("JPEG", edit, source=plain("JPEG", seed=2), ingredient=captured)
    report = check.check(decode(edited))
    assert report.data["digital_source_types"] == ["digitalCapture"]
    assert report.evidence == ()


def test_pixels_altered_after_signing(check: C2paCheck, signing: Signing) -> None:
    signed = signing.sign("JPEG")
    # Change one quantisation step: the file still decodes, its pixels differ, and the data
    # hash (which covers every byte outside the manifest) no longer matches.
    table = signed.index(b"\xff\xdb") + 5
    altered = bytearray(signed)
    altered[table + 10] = altered[table + 10] % 50 + 7
    assert bytes(altered) != signed
    media = decode(bytes(altered))
    assert media.image.tobytes() != decode(signed).image.tobytes()
    report = check.check(media)
    assert report.data["state"] == "invalid"
    assert "assertion.dataHash.mismatch" in report.data["validation_codes"]
    # Decided: a broken manifest's AI claim still counts (it is the file saying it was made by
    # AI), and the evidence says that validation failed.
    assert report.data["digital_source_types"] == ["trainedAlgorithmicMedia"]
    assert len(report.evidence) == 1
    detail = report.evidence[0].detail
    assert "(invalid: it failed validation (assertion.dataHash.mismatch))" in detail


# -- hostile bytes -----------------------------------------------------------------------------


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _hostile() -> dict[str, bytes]:
    jpeg, png = plain("JPEG"), plain("PNG")
    jumbf = struct.pack(">I", 40) + b"jumb" + bytes(8) + b"jumd" + b"not a description box"
    return {
        "jpeg comment": jpeg[:2] + _segment(0xFE, b"jumb jumd c2pa provenance") + jpeg[2:],
        "jpeg app11 garbage": jpeg[:2]
        + _segment(0xEB, b"JP\x00\x01\x00\x00\x00\x01" + jumbf)
        + jpeg[2:],
        "jpeg app11 huge box": jpeg[:2]
        + _segment(0xEB, b"JP\x00\x01\x00\x00\x00\x01" + b"\xff\xff\xff\xf0jumb" + bytes(64))
        + jpeg[2:],
        "png cabx garbage": png[:33] + _png_chunk(b"caBX", jumbf) + png[33:],
        "png cabx empty": png[:33] + _png_chunk(b"caBX", b"") + png[33:],
        "xmp provenance not a url": jpeg[:2]
        + _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x dcterms:provenance='\x00\x01'/>")
        + jpeg[2:],
    }


@pytest.mark.parametrize("name", list(_hostile()))
def test_hostile_bytes_never_raise(check: C2paCheck, name: str) -> None:
    report = check.check(decode(_hostile()[name]))
    assert report.data["state"] in ("none", "invalid", "remote")
    assert report.evidence == ()
    json.dumps(report.data)


def test_damaged_manifests_are_invalid(check: C2paCheck, signing: Signing) -> None:
    signed = signing.sign("JPEG")
    start = signed.index(b"jumd")
    for offset, length in ((200, 300), (40, 8), (600, 1)):
        damaged = bytearray(signed)
        damaged[start + offset : start + offset + length] = b"\xaa" * length
        report = check.check(decode(bytes(damaged)))
        assert report.data["state"] == "invalid", (offset, report.data)
        assert report.data.get("error") or report.data["validation_codes"]


def test_unreadable_store_json_is_invalid() -> None:
    report = report_from_store({"manifests": "nope", "validation_status": [{"code": "x.y"}]})
    assert report.data["state"] == "invalid"
    assert report.data["error"] == "the manifest store has no active manifest"
    assert report.data["validation_codes"] == ["x.y"]


# -- the byte pre-check ------------------------------------------------------------------------


def _precheck_cases(signing: Signing) -> dict[str, tuple[bytes, str]]:
    cases = {f"fixture {n}": (shared_fixture("c2pa", n).read_bytes(), "JPEG") for n in FIXTURES}
    for fmt in MIME:
        cases[f"plain {fmt}"] = (plain(fmt), fmt)
        cases[f"signed {fmt}"] = (signing.sign(fmt), fmt)
        cases[f"remote {fmt}"] = (signing.sign(fmt, remote_url="https://m.invalid/x"), fmt)
    cases["compressed PNG"] = (signing.sign("PNG", compress=True), "PNG")
    for name, data in _hostile().items():
        cases[name] = (data, "PNG" if name.startswith("png") else "JPEG")
    return cases


def test_precheck_never_misses_what_the_library_finds(signing: Signing) -> None:
    cases = _precheck_cases(signing)
    found = {name: library_finds(data, MIME[fmt]) for name, (data, fmt) in cases.items()}
    assert found["fixture C.jpg"] == found["fixture XCA.jpg"] == found["signed WEBP"] == "store"
    assert found["fixture cloud.jpg"] == found["remote GIF"] == "remote"
    for name, (data, _) in cases.items():
        hint = may_carry_c2pa(decode(data))
        if found[name] in ("store", "remote"):
            assert hint, name
        if name.startswith("plain") or name == "fixture A.jpg":
            assert not hint, name


def _reblock_gif(data: bytes, app: bytes, needle: bytes) -> bytes:
    """``data`` with its ``app`` application extension's sub-blocks cut anew in the middle of
    every ``needle`` (and every 255 bytes): still a valid GIF, which any reader reads alike."""
    start = data.index(b"\x21\xff\x0b" + app) + 14
    payload, at = b"", start
    while data[at]:
        payload += data[at + 1 : at + 1 + data[at]]
        at += 1 + data[at]
    cuts, found = [0], payload.find(needle)
    while found != -1:
        cuts.append(found + len(needle) // 2)
        found = payload.find(needle, found + 1)
    pieces = [payload[a:b] for a, b in pairwise([*cuts, len(payload)])]
    blocks = b"".join(
        bytes([len(p[i : i + 255])]) + p[i : i + 255] for p in pieces for i in range(0, len(p), 255)
    )
    return data[:start] + blocks + b"\x00" + data[at + 1 :]


def test_precheck_survives_gif_sub_blocks(check: C2paCheck, signing: Signing) -> None:
    # c2pa writes GIF XMP in 255-byte sub-blocks, so a length byte can fall inside
    # "provenance" in an ordinary file; here it is put there on purpose.
    remote = _reblock_gif(
        signing.sign("GIF", remote_url="https://m.invalid/split"), b"XMP DataXMP", b"provenance"
    )
    assert b"provenance" not in remote
    assert library_finds(remote, "image/gif") == "remote"
    assert check.check(decode(remote)).data["state"] == "remote"
    # An embedded store whose every "jumb" straddles two sub-blocks.
    embedded = _reblock_gif(signing.sign("GIF"), b"C2PA_GIF", b"jumb")
    assert b"jumb" not in embedded
    assert library_finds(embedded, "image/gif") == "store"
    # Longer sub-block framing shifts the bytes after it, so the data hash fails: invalid.
    data = check.check(decode(embedded)).data
    assert data["digital_source_types"] == ["trainedAlgorithmicMedia"], data


def test_precheck_reads_inflated_png_xmp() -> None:
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        'xmlns:dcterms="http://purl.org/dc/terms/" dcterms:provenance="https://m.invalid/y"/>'
        "</rdf:RDF></x:xmpmeta>"
    )
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp, zip=True)
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(out, "PNG", pnginfo=info)
    media = decode(out.getvalue())
    assert b"provenance" not in media.data  # only the inflated text says it
    assert may_carry_c2pa(media)


def test_precheck_reads_xmp_text_too() -> None:
    # Older Pillow gives a PNG's XMP only as text under its iTXt keyword.
    media = decode(plain("PNG"))
    assert not may_carry_c2pa(media)
    xmp = '<rdf:Description dcterms:provenance="https://m.invalid/z"/>'
    assert may_carry_c2pa(replace(media, info={"XML:com.adobe.xmp": xmp}))
    assert may_carry_c2pa(replace(media, info={"xmp": xmp.encode()}))
    assert not may_carry_c2pa(replace(media, info={"xmp": b"<x/>", "comment": xmp}))


def test_plain_files_never_reach_the_library(
    check: C2paCheck, signing: Signing, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    class Forbidden:
        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            raise AttributeError(name)

    signed = decode(signing.sign("PNG"))
    monkeypatch.setattr(c2pa_check, "_c2pa", Forbidden())
    for fmt in MIME:
        assert check.check(decode(plain(fmt))).data["state"] == "none"
    # c2pa cannot read BMP, so its bytes are not even looked at.
    bmp = decode(encode(Image.new("RGB", (8, 8)), "BMP") + b"jumb provenance")
    assert check.check(bmp).data["state"] == "none"
    assert calls == []
    # ...and the spy does catch a file that needs the library.
    assert check.check(signed).data["state"] == "invalid"
    assert calls


# -- no network --------------------------------------------------------------------------------


class ProxyListener:
    """A local TCP server that records the first bytes of every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.hits: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.hits.append(conn.recv(512))
                except OSError:
                    self.hits.append(b"?")

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def proxy() -> Iterator[ProxyListener]:
    listener = ProxyListener()
    yield listener
    listener.close()


_CHILD = """
import json, sys, time
from dignity.media import decode
from dignity.signals.c2pa import C2paCheck
check = C2paCheck()
out = {}
for path in sys.argv[1:]:
    media = decode(open(path, "rb").read())
    start = time.perf_counter()
    out[path] = [check.check(media).data, time.perf_counter() - start]
print(json.dumps(out))
"""

_CONTROL = """
import io, sys, c2pa
context = c2pa.Context.from_dict({"verify": {"remote_manifest_fetch": True}})
for path in sys.argv[1:]:
    try:
        c2pa.Reader(io.BytesIO(open(path, "rb").read()), context=context)
    except Exception as exc:
        print(exc)
"""


def _run_behind(proxy: ProxyListener, script: str, *paths: str) -> str:
    """Run ``script`` in a fresh interpreter whose every HTTP(S) request goes to ``proxy``
    (a fresh process, because the HTTP client may read the proxy variables only once)."""
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        env[name] = env[name.upper()] = proxy.url
    done = subprocess.run(
        [sys.executable, "-c", script, *paths],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def _remote_files(proxy: ProxyListener, signing: Signing, folder: Path) -> list[str]:
    """Files whose manifests live at the listener itself or, through the proxy, elsewhere."""
    paths = []
    for fmt, url in (
        ("JPEG", proxy.url + "/direct.c2pa"),
        ("PNG", "https://manifests.invalid/proxied.c2pa"),
        ("GIF", proxy.url + "/direct-gif.c2pa"),
    ):
        path = folder / f"remote.{fmt.lower()}"
        path.write_bytes(signing.sign(fmt, remote_url=url))
        paths.append(str(path))
    return paths


def _check_behind(proxy: ProxyListener, paths: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = json.loads(_run_behind(proxy, _CHILD, *paths))
    assert max(seconds for _, seconds in results.values()) < 5.0  # no waiting on a network
    return results


def test_reading_is_offline(proxy: ProxyListener, signing: Signing, tmp_path: Path) -> None:
    paths = _remote_files(proxy, signing, tmp_path)
    embedded = tmp_path / "embedded.jpg"
    embedded.write_bytes(signing.sign("JPEG"))
    results = _check_behind(proxy, [*paths, str(embedded)])
    assert [results[p][0]["state"] for p in paths] == ["remote"] * 3
    assert results[str(embedded)][0]["state"] == "valid"
    assert proxy.hits == []


def test_shared_fixtures_are_read_offline(proxy: ProxyListener) -> None:
    paths = [str(shared_fixture("c2pa", name)) for name in FIXTURES]
    results = _check_behind(proxy, paths)
    states = [results[p][0]["state"] for p in paths]
    assert states == ["none", "valid", "valid", "invalid", "remote"]
    assert proxy.hits == []


def test_the_proxy_would_have_seen_a_fetch(
    proxy: ProxyListener, signing: Signing, tmp_path: Path
) -> None:
    # Positive control for the two tests above: with fetching on, the same files do reach the
    # listener, directly or as a proxy, so its silence there comes from our settings.
    _run_behind(proxy, _CONTROL, *_remote_files(proxy, signing, tmp_path))
    assert any(b"/direct.c2pa HTTP/1.1" in hit for hit in proxy.hits), proxy.hits
    assert any(b"CONNECT manifests.invalid:443" in hit for hit in proxy.hits), proxy.hits


# -- concurrency and processes -----------------------------------------------------------------


def test_threads_agree_with_serial(check: C2paCheck, signing: Signing) -> None:
    media = [decode(signing.sign(fmt)) for fmt in MIME]
    media += [decode(signing.sign("JPEG", remote_url="https://m.invalid/t")), decode(plain("PNG"))]
    media += [decode(signing.sign("JPEG", manifest("digitalCapture"), compress=True))]
    serial = [check.check(m).data for m in media]
    fresh = C2paCheck()  # its context is made by whichever thread comes first
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda m: fresh.check(m).data, media * 6))
    assert together == serial * 6


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_reads_too(check: C2paCheck, signing: Signing) -> None:
    media = decode(signing.sign("JPEG"))
    assert check.check(media).data["state"] == "valid"  # the parent's context now exists
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            state = str(check.check(media).data)
        except BaseException as exc:
            state = repr(exc)
        os.write(write_end, state.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    assert "'state': 'valid'" in child, child


def test_factory_and_protocol() -> None:
    checks = create(Settings())
    assert len(checks) == 1
    assert isinstance(checks[0], ProvenanceCheck)
    assert checks[0].name == "c2pa" and checks[0].version == "2"


def test_factory_without_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(c2pa_check, "_c2pa", None)
    assert create(Settings()) == []
    report = C2paCheck().check(decode(plain("JPEG")))
    assert report.data["state"] == "none" and "not installed" in report.data["error"]


# -- the ingredient walk, on hand-built stores -------------------------------------------------


def _manifest(*terms: str, ingredients: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    return {
        "claim_generator": "hand-built/1",
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [{"action": "c2pa.opened"}]
                    + [{"action": "c2pa.edited", "digitalSourceType": t} for t in terms]
                },
            }
        ],
        "ingredients": [{"title": label, "active_manifest": label} for label in ingredients],
        **extra,
    }


def _store(active: str, state: str = "Valid", **manifests: dict[str, Any]) -> dict[str, Any]:
    return {"active_manifest": active, "manifests": manifests, "validation_state": state}


def test_walk_finds_a_term_two_ingredients_down() -> None:
    store = _store(
        "top",
        top=_manifest(ingredients=("middle",)),
        middle=_manifest(IPTC + "digitalCapture", ingredients=("bottom",)),
        bottom=_manifest("digsrctype:trainedAlgorithmicMedia"),
        unrelated=_manifest(IPTC + "compositeWithTrainedAlgorithmicMedia"),
    )
    report = report_from_store(store)
    assert report.data["digital_source_types"] == ["digitalCapture", "trainedAlgorithmicMedia"]
    assert report.data["active_manifest"] == "top"
    (evidence,) = report.evidence
    assert "trainedAlgorithmicMedia in an ingredient's manifest" in evidence.detail
    assert "compositeWith" not in evidence.detail  # not referenced by the active manifest


def test_walk_survives_cycles() -> None:
    store = _store(
        "a",
        a=_manifest(IPTC + "algorithmicMedia", ingredients=("b", "a")),
        b=_manifest("algorithmicMedia ", ingredients=("c",)),
        c=_manifest("trainedAlgorithmicMedia", ingredients=("a", "b", "missing")),
    )
    report = report_from_store(store)
    assert report.data["digital_source_types"] == ["algorithmicMedia", "trainedAlgorithmicMedia"]
    (evidence,) = report.evidence
    assert "declares digitalSourceType algorithmicMedia, trainedAlgorithmicMedia (" in (
        evidence.detail
    )
    assert "ingredient" not in evidence.detail  # the active manifest says so itself


def test_walk_follows_manifest_data_identifiers() -> None:
    top = _manifest()
    top["ingredients"] = [{"manifest_data": {"identifier": "child"}}]
    report = report_from_store(_store("top", top=top, child=_manifest("algorithmicMedia")))
    assert report.data["digital_source_types"] == ["algorithmicMedia"]


def test_long_chains_do_not_recurse() -> None:
    manifests = {f"m{i}": _manifest(ingredients=(f"m{i + 1}",)) for i in range(800)}
    manifests["m800"] = _manifest("trainedAlgorithmicMedia")
    report = report_from_store({"active_manifest": "m0", "manifests": manifests})
    assert report.data["digital_source_types"] == ["trainedAlgorithmicMedia"]


def test_actions_v1_labels_instances_and_templates() -> None:
    active = {
        "claim_generator_info": [{"name": "gen", "version": "3"}, {"name": "lib"}],
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": "a/b/x"}]},
            },
            {
                "label": "c2pa.actions.v2__1",
                "data": {
                    "actions": [{"action": "c2pa.placed"}],
                    "templates": [
                        {"action": "c2pa.placed", "digitalSourceType": "algorithmicMedia"},
                        {"action": "c2pa.cropped", "digitalSourceType": "unusedTemplate"},
                    ],
                },
            },
            {"label": "c2pa.actions.v2__2", "data": {"templates": [{"action": "*"}]}},
            {"label": "stds.exif", "data": {"digitalSourceType": "trainedAlgorithmicMedia"}},
        ],
    }
    report = report_from_store(_store("m", m=active))
    assert report.data["digital_source_types"] == ["x", "algorithmicMedia"]
    assert report.data["claim_generator"] == "gen/3 lib"


def test_invalid_store_still_gives_evidence_that_says_so() -> None:
    store = _store("m", "Invalid", m=_manifest("trainedAlgorithmicMedia"))
    store["validation_status"] = [
        {"code": "signingCredential.untrusted"},
        {"code": "claimSignature.mismatch"},
    ]
    report = report_from_store(store)
    assert report.data["state"] == "invalid"
    assert report.data["validation_codes"] == [
        "signingCredential.untrusted",
        "claimSignature.mismatch",
    ]
    (evidence,) = report.evidence
    assert evidence.detail.startswith(
        "C2PA manifest (invalid: it failed validation (claimSignature.mismatch)) declares"
    )


@pytest.mark.parametrize(
    ("state", "codes", "expected"),
    [
        ("Trusted", [], "trusted"),
        ("Valid", ["signingCredential.untrusted"], "valid"),
        # Some library versions call a store whose only failure is an untrusted signer Invalid.
        ("Invalid", ["signingCredential.untrusted"], "valid"),
        ("Invalid", ["claimSignature.mismatch"], "invalid"),
        (None, ["signingCredential.untrusted"], "valid"),
        (None, ["assertion.dataHash.mismatch"], "invalid"),
        ("Unknown", [], "valid"),
    ],
)
def test_state_mapping(state: str | None, codes: list[str], expected: str) -> None:
    store: dict[str, Any] = {"active_manifest": "m", "manifests": {"m": _manifest()}}
    if state is not None:
        store["validation_state"] = state
    store["validation_status"] = [{"code": c} for c in codes]
    assert report_from_store(store).data["state"] == expected


def test_hostile_strings_are_bounded() -> None:
    noisy = "gen\x00\x1b[31m" + "A" * 10_000
    terms = [f"{IPTC}term{i}\n" for i in range(100)] + ["x" * 5000]
    store = _store("m", m=_manifest(*terms, claim_generator=noisy, signature_info={"issuer": 7}))
    store["validation_status"] = [{"code": f"c{i}"} for i in range(100)] + [{"code": None}]
    data = report_from_store(store).data
    assert data["claim_generator"].startswith("gen")
    assert len(data["claim_generator"]) == 200 and data["claim_generator"].isprintable()
    assert data["digital_source_types"][:2] == ["term0", "term1"]
    assert len(data["digital_source_types"]) == 32 and len(data["validation_codes"]) == 32
    assert data["signer"] is None
    assert len(json.dumps(data)) < 10_000
