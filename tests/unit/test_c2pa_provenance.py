"""C2PA provenance beyond digitalSourceType: generators recognised by what their manifests name
(the packaged table), on manifest stores shaped as the vendors' published ones and on files we
sign here with c2pa-python; and trust: the bundled C2PA conformance trust list, a configured
anchors file (``DIGNITY_C2PA_TRUST_ANCHORS``) and a throwaway CA made at test time, so that a
manifest is ``trusted`` only when its signer chains to an anchor. Every image is a generated
benign landscape."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import c2pa  # type: ignore[import-untyped]
import pytest
from cryptography import x509

from dignity.media import decode
from dignity.samples import encode, landscape
from dignity.settings import Settings
from dignity.signals.c2pa import (
    C2paCheck,
    create,
    known_generators,
    report_from_store,
    trust_anchors,
)
from dignity.signals.runner import SignalConfigError
from tests.unit.test_c2pa import OFFLINE, make_ca_and_signer

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"


# -- the table ---------------------------------------------------------------------------------


def test_table_covers_the_major_generators_with_sources() -> None:
    rows = known_generators()
    assert {r.vendor for r in rows} >= {
        "Adobe",
        "OpenAI",
        "Microsoft",
        "Google",
        "Meta",
        "Midjourney",
        "Stability AI",
    }
    for row in rows:
        url = urlparse(row.source)
        assert url.scheme == "https" and url.netloc, row
        assert row.prefix == row.prefix.strip().lower() and "_" not in row.prefix, row
    # The strings read in published manifests are marked so: at least Adobe, OpenAI, Microsoft.
    assert {r.vendor for r in rows if r.seen} >= {"Adobe", "OpenAI", "Microsoft"}


@pytest.mark.parametrize(
    ("field", "text", "vendor"),
    [
        ("claim_generator", "Adobe_Firefly", "Adobe"),
        ("claim_generator", "Adobe_Firefly adobe_c2pa/0.5.0 c2pa-rs/0.20.0", "Adobe"),
        ("claim_generator", "OpenAI-API c2pa-rs/0.28.4", "OpenAI"),
        ("claim_generator", "ChatGPT c2pa-rs/0.28.4", "OpenAI"),
        ("claim_generator", "Microsoft_Responsible_AI/1.0", "Microsoft"),
        ("software_agent", "DALL·E", "OpenAI"),
        ("software_agent", "GPT-4o", "OpenAI"),
        ("software_agent", "Azure OpenAI ImageGen", "Microsoft"),
        ("software_agent", "Midjourney v6", "Midjourney"),
        ("action_parameter", "com.adobe.firefly.version", "Adobe"),
    ],
)
def test_published_strings_are_named(field: str, text: str, vendor: str) -> None:
    found = [r for r in known_generators() if r.field == field and r.names(text)]
    assert found and found[0].vendor == vendor


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("claim_generator", "Adobe_Photoshop/25.0 adobe_c2pa/0.7.6 c2pa-rs/0.25.2"),
        ("claim_generator", "Adobe_Lightroom/7.0"),
        ("claim_generator", "ChatGPTx/1.0"),  # a prefix must end at a word boundary
        ("claim_generator", "Google C2PA Core Generator Library"),  # Google signs edits too
        ("software_agent", "Pixel Camera"),
        ("software_agent", "Soraya's camera app"),
        ("action_parameter", "com.adobe.photoshop.tool"),
    ],
)
def test_editors_and_cameras_are_not_named(field: str, text: str) -> None:
    assert not [r for r in known_generators() if r.field == field and r.names(text)]


# -- manifest stores shaped as the vendors' published ones --------------------------------------


def _store(active: dict[str, Any], *, state: str | None = None, **others: Any) -> dict[str, Any]:
    store: dict[str, Any] = {"active_manifest": "m", "manifests": {"m": active, **others}}
    if state is not None:
        store["validation_state"] = state
    return store


def test_bing_image_creator_2024_without_source_type() -> None:
    # Microsoft's 2024 manifests declare generation only by name: a created action by "Image
    # Creator from Designer" and the claim generator (shape as ExifTool shows them, see the
    # table's source); no digitalSourceType at all.
    active = {
        "claim_generator": "Microsoft_Responsible_AI/1.0",
        "claim_generator_info": [{"name": "Microsoft Responsible AI Image Provenance"}],
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "softwareAgent": "Image Creator from Designer",
                            "description": "AI Generated Image",
                        }
                    ]
                },
            }
        ],
    }
    report = report_from_store(_store(active))
    assert report.data["digital_source_types"] == []
    assert report.data["vendor"] == "Microsoft"
    (evidence,) = report.evidence
    assert evidence.source == "c2pa"
    assert evidence.detail == (
        "C2PA manifest (valid) names the AI generator Microsoft Bing Image Creator / Designer"
        " (claim generator 'Microsoft_Responsible_AI/1.0')"
    )


def test_firefly_2023_pipeline_agent() -> None:
    active = {
        "claim_generator": "Adobe_Firefly adobe_c2pa/0.5.0 c2pa-rs/0.20.0",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "softwareAgent": "Adobe Firefly Pipeline",
                            "parameters": {"firefly.operation": "text_to_image"},
                        }
                    ]
                },
            }
        ],
    }
    report = report_from_store(_store(active, state="Valid"))
    assert (report.data["vendor"], report.data["generator"]) == ("Adobe", "Adobe Firefly")
    assert "names the AI generator Adobe Firefly" in report.evidence[0].detail


def test_chatgpt_store_names_openai_and_is_valid_though_untrusted() -> None:
    # contentauth/example-assets images/manifests/ChatGPT_Image.json, reduced: the generated
    # image is an ingredient (GPT-4o, trainedAlgorithmicMedia), the active manifest converted
    # it, and the store says "Invalid" with an untrusted signer as its only failure.
    inner = {
        "claim_generator_info": [{"name": "ChatGPT", "org.contentauth.c2pa_rs": "0.0.0"}],
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "softwareAgent": {"name": "GPT-4o"},
                            "digitalSourceType": IPTC + "trainedAlgorithmicMedia",
                        },
                        {"action": "c2pa.converted"},
                    ]
                },
            }
        ],
        "signature_info": {"issuer": "OpenAI", "common_name": "Truepic Lens CLI in Sora"},
    }
    active = {
        "claim_generator_info": [{"name": "ChatGPT", "org.contentauth.c2pa_rs": "0.0.0"}],
        "ingredients": [{"relationship": "parentOf", "active_manifest": "inner"}],
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": [{"action": "c2pa.opened"}]}}
        ],
        "signature_info": {"issuer": "OpenAI"},
    }
    store = _store(active, state="Invalid", inner=inner)
    store["validation_status"] = [{"code": "signingCredential.untrusted"}] * 2
    report = report_from_store(store)
    assert report.data["state"] == "valid"
    assert report.data["vendor"] == "OpenAI"
    (evidence,) = report.evidence
    assert evidence.detail == (
        "C2PA manifest (valid) declares digitalSourceType trainedAlgorithmicMedia in an"
        " ingredient's manifest (claim generator: ChatGPT); made with OpenAI ChatGPT"
        " (claim generator 'ChatGPT')"
    )


def test_generator_named_only_in_an_ingredient() -> None:
    inner = {"claim_generator": "OpenAI-API c2pa-rs/0.28.4", "assertions": []}
    active = {
        "claim_generator": "Adobe_Photoshop/25.0",
        "ingredients": [{"active_manifest": "inner"}],
        "assertions": [],
    }
    report = report_from_store(_store(active, inner=inner))
    assert report.data["vendor"] == "OpenAI"
    assert report.evidence[0].detail.endswith(
        "names the AI generator OpenAI API (DALL·E) (claim generator"
        " 'OpenAI-API c2pa-rs/0.28.4' in an ingredient's manifest)"
    )


def test_an_editor_alone_is_no_evidence() -> None:
    active = {
        "claim_generator": "Adobe_Photoshop/25.0 adobe_c2pa/0.7.6 c2pa-rs/0.25.2",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {"actions": [{"action": "c2pa.edited", "softwareAgent": "Photoshop"}]},
            }
        ],
    }
    report = report_from_store(_store(active, state="Trusted"))
    assert report.data["state"] == "trusted"
    assert report.data["vendor"] is None
    assert report.evidence == ()


def test_an_invalid_vendor_manifest_still_says_so() -> None:
    active = {"claim_generator": "Adobe_Firefly", "assertions": []}
    store = _store(active, state="Invalid")
    store["validation_status"] = [{"code": "assertion.dataHash.mismatch"}]
    (evidence,) = report_from_store(store).evidence
    assert evidence.detail.startswith(
        "C2PA manifest (invalid: it failed validation (assertion.dataHash.mismatch)) names"
    )


# -- files signed here, and trust --------------------------------------------------------------


@dataclass
class Pki:
    ca_pem: bytes
    signer: Any


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    """A throwaway CA and an ES256 signer it issued (no TSA: offline)."""
    ca_pem, chain, pem = make_ca_and_signer("dignity provenance test")
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(b"es256", chain, pem, None))
    yield Pki(ca_pem, signer)
    signer.close()


def _signed(pki: Pki, definition: dict[str, Any], *, check: bool = True) -> bytes:
    # check=False writes what today's library refuses to sign and older ones wrote: a created
    # action with no digitalSourceType (a v1-era manifest read by a current reader).
    verify = {**OFFLINE["verify"], "verify_after_sign": check}
    settings = {**OFFLINE, "verify": verify, "builder": {"thumbnail": {"enabled": False}}}
    with c2pa.Context.from_dict(settings) as context:
        builder = c2pa.Builder(definition, context=context)
        out = io.BytesIO()
        source = io.BytesIO(encode(landscape(7, (160, 120)), "JPEG"))
        builder.sign(pki.signer, "image/jpeg", source, out)
        builder.close()
        return out.getvalue()


def _definition(generator: str, action: dict[str, Any], label: str) -> dict[str, Any]:
    return {
        "claim_generator_info": [{"name": generator, "version": "1.0"}],
        "title": "synthetic landscape",
        "assertions": [{"label": label, "data": {"actions": [action]}}],
    }


# As Firefly's 2025 manifests: its claim generator, its agent, trainedAlgorithmicMedia.
FIREFLY = _definition(
    "Adobe_Firefly",
    {
        "action": "c2pa.created",
        "softwareAgent": {"name": "Adobe Firefly"},
        "digitalSourceType": IPTC + "trainedAlgorithmicMedia",
    },
    "c2pa.actions.v2",
)
# As Bing Image Creator's 2024 manifests: generation declared by name only.
BING_BY_NAME = _definition(
    "Microsoft_Responsible_AI",
    {"action": "c2pa.created", "softwareAgent": "Image Creator from Designer"},
    "c2pa.actions",
)


@pytest.fixture(scope="module")
def firefly_jpeg(pki: Pki) -> bytes:
    return _signed(pki, FIREFLY)


def test_signed_file_names_its_vendor(firefly_jpeg: bytes) -> None:
    report = C2paCheck().check(decode(firefly_jpeg))
    assert report.data["state"] == "valid"
    assert (report.data["vendor"], report.data["generator"]) == ("Adobe", "Adobe Firefly")
    assert "signingCredential.untrusted" in report.data["validation_codes"]
    (evidence,) = report.evidence
    assert evidence.detail == (
        "C2PA manifest (valid) declares digitalSourceType trainedAlgorithmicMedia (claim"
        " generator: Adobe_Firefly/1.0); made with Adobe Firefly (claim generator"
        " 'Adobe_Firefly')"
    )


def test_signed_file_declaring_generation_by_name_only(pki: Pki) -> None:
    report = C2paCheck().check(decode(_signed(pki, BING_BY_NAME, check=False)))
    # Today's reader calls a created action without a source type malformed; the file still
    # says who made it, and the evidence says both.
    assert report.data["state"] == "invalid"
    assert report.data["digital_source_types"] == []
    assert report.data["vendor"] == "Microsoft"
    (evidence,) = report.evidence
    assert evidence.detail == (
        "C2PA manifest (invalid: it failed validation (assertion.action.malformed)) names the"
        " AI generator Microsoft Bing Image Creator / Designer (claim generator"
        " 'Microsoft_Responsible_AI')"
    )


def test_trusted_only_with_the_signers_anchor(pki: Pki, firefly_jpeg: bytes) -> None:
    media = decode(firefly_jpeg)
    # The bundled list does not hold our test CA: intact, but not trusted.
    bundled = C2paCheck(trust_anchors()).check(media)
    assert bundled.data["state"] == "valid"
    assert "signingCredential.untrusted" in bundled.data["validation_codes"]
    # The test CA as an anchor, beside the bundled list: trusted.
    ours = C2paCheck(trust_anchors(extra=pki.ca_pem.decode())).check(media)
    assert ours.data["state"] == "trusted", ours.data
    assert ours.data["validation_codes"] == []
    assert ours.evidence[0].detail.startswith("C2PA manifest (trusted) declares")


def test_trust_anchors_file_from_settings(pki: Pki, firefly_jpeg: bytes, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(pki.ca_pem)
    (check,) = create(Settings(c2pa_trust_anchors=anchors))
    assert check.check(decode(firefly_jpeg)).data["state"] == "trusted"
    (plain,) = create(Settings())
    assert plain.check(decode(firefly_jpeg)).data["state"] == "valid"


def test_bad_trust_anchors_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(SignalConfigError, match="cannot read"):
        create(Settings(c2pa_trust_anchors=tmp_path / "missing.pem"))
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    with pytest.raises(SignalConfigError, match="holds no PEM certificate"):
        create(Settings(c2pa_trust_anchors=empty))


def test_bundled_trust_list_is_the_conformance_list() -> None:
    text = trust_anchors()
    assert text is not None
    certs = x509.load_pem_x509_certificates(text.encode())
    names = {c.subject.rfc4514_string() for c in certs}
    assert len(certs) == 17
    assert any("Adobe Product Issuing CA" in n for n in names)
    assert any("Google C2PA Root CA G3" in n for n in names)
    assert trust_anchors(bundled=False) is None
