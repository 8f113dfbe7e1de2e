"""The signed federation directory, loaded from real files signed with real Ed25519 keys."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.dev.pki import ensure_node_material
from gateway.errors import PeerRejected
from gateway.federation.directory import (
    Directory,
    DirectoryError,
    canonical_json,
    public_key_kid,
    sign_entry,
    write_directory,
)

NODES = ("whitehall", "holyrood", "stormont")


@pytest.fixture(scope="module")
def directory_keys() -> dict[str, Ed25519PrivateKey]:
    return {node: Ed25519PrivateKey.generate() for node in NODES}


@pytest.fixture(scope="module")
def anchors(directory_keys: dict[str, Ed25519PrivateKey]) -> dict[str, Ed25519PublicKey]:
    return {node: key.public_key() for node, key in directory_keys.items()}


@pytest.fixture(scope="module")
def ca_pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    state = tmp_path_factory.mktemp("pki")
    return {node: ensure_node_material(state, node).ca_cert.read_text() for node in NODES}


@pytest.fixture(scope="module")
def node_keys() -> dict[str, Ed25519PrivateKey]:
    return {node: Ed25519PrivateKey.generate() for node in NODES}


def public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def key_item(node: str, key: Ed25519PrivateKey) -> dict[str, str]:
    return {"kid": public_key_kid(node, key.public_key()), "public_key_pem": public_pem(key)}


@pytest.fixture
def entries(
    ca_pems: dict[str, str], node_keys: dict[str, Ed25519PrivateKey]
) -> dict[str, dict[str, Any]]:
    serves: dict[str, list[dict[str, Any]]] = {
        "whitehall": [
            {"record_type": "BENEFIT_AWARD", "subject_kinds": ["nino"]},
            {
                "record_type": "BIRTH_REGISTRATION",
                "subject_kinds": ["registration_id"],
                "registration_prefixes": ["EW-"],
            },
        ],
        "holyrood": [
            {
                "record_type": "BIRTH_REGISTRATION",
                "subject_kinds": ["registration_id"],
                "registration_prefixes": ["SC-"],
            },
            {"record_type": "HEALTH_SUMMARY", "subject_kinds": ["chi_number"]},
        ],
        "stormont": [{"record_type": "HEALTH_SUMMARY", "subject_kinds": ["hc_number"]}],
    }
    return {
        node: {
            "node": node,
            "name": f"{node.title()} administration",
            "exchange_endpoint": f"127.0.0.1:74{index:02d}",
            "federation_endpoint": f"127.0.0.1:75{index:02d}",
            "ca_cert_pem": ca_pems[node],
            "signing_keys": [key_item(node, node_keys[node])],
            "serves": serves[node],
            "serial": 3,
            "issued_at": "2026-11-21T10:00:00Z",
        }
        for index, node in enumerate(NODES, start=1)
    }


def write(path: Path, items: list[dict[str, Any]]) -> Path:
    write_directory(path, items)
    return path


def signed_file(
    tmp_path: Path,
    entries: dict[str, dict[str, Any]],
    directory_keys: dict[str, Ed25519PrivateKey],
) -> Path:
    items = [sign_entry(entries[node], directory_keys[node]) for node in NODES]
    return write(tmp_path / "directory.json", items)


def test_a_directory_signed_by_each_owner_loads(
    tmp_path: Path, entries: dict[str, dict[str, Any]], directory_keys: dict, anchors: dict
) -> None:
    directory = Directory.load(signed_file(tmp_path, entries, directory_keys), anchors)

    holyrood = directory.entry("holyrood")
    assert directory.nodes == ("holyrood", "stormont", "whitehall")
    assert holyrood.name == "Holyrood administration"
    assert holyrood.federation_endpoint == "127.0.0.1:7502"
    assert holyrood.serial == 3
    assert holyrood.serves[0].registration_prefixes == ("SC-",)


def test_an_entry_changed_after_signing_is_refused_naming_its_node(
    tmp_path: Path, entries: dict[str, dict[str, Any]], directory_keys: dict, anchors: dict
) -> None:
    signed = sign_entry(entries["holyrood"], directory_keys["holyrood"])
    signed["entry"]["federation_endpoint"] = "203.0.113.9:7502"
    path = write(tmp_path / "directory.json", [signed])

    with pytest.raises(DirectoryError) as caught:
        Directory.load(path, anchors)
    assert str(caught.value) == (
        "directory entry for holyrood is not signed by holyrood's directory key"
    )


def test_an_entry_signed_by_another_administration_is_refused(
    tmp_path: Path, entries: dict[str, dict[str, Any]], directory_keys: dict, anchors: dict
) -> None:
    path = write(
        tmp_path / "directory.json", [sign_entry(entries["holyrood"], directory_keys["whitehall"])]
    )

    with pytest.raises(DirectoryError, match="not signed by holyrood's directory key"):
        Directory.load(path, anchors)


def test_an_entry_for_a_node_without_a_trust_anchor_is_refused(
    tmp_path: Path, entries: dict[str, dict[str, Any]], directory_keys: dict, anchors: dict
) -> None:
    rogue = dict(entries["stormont"], node="cardiff")
    path = write(tmp_path / "directory.json", [sign_entry(rogue, Ed25519PrivateKey.generate())])

    with pytest.raises(DirectoryError, match="'cardiff', which has no trust anchor"):
        Directory.load(path, anchors)


def test_a_trusted_node_that_has_not_joined_yet_may_be_missing(
    tmp_path: Path, entries: dict[str, dict[str, Any]], directory_keys: dict, anchors: dict
) -> None:
    path = write(
        tmp_path / "directory.json", [sign_entry(entries["whitehall"], directory_keys["whitehall"])]
    )

    directory = Directory.load(path, anchors)

    assert directory.nodes == ("whitehall",)
    with pytest.raises(PeerRejected, match="'holyrood' is not in the federation directory"):
        directory.entry("holyrood")


def test_two_entries_for_one_node_are_refused(
    tmp_path: Path, entries: dict[str, dict[str, Any]], directory_keys: dict, anchors: dict
) -> None:
    newer = dict(entries["holyrood"], serial=4)
    items = [
        sign_entry(entries["holyrood"], directory_keys["holyrood"]),
        sign_entry(newer, directory_keys["holyrood"]),
    ]
    path = write(tmp_path / "directory.json", items)

    with pytest.raises(DirectoryError, match="more than one entry for holyrood"):
        Directory.load(path, anchors)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"entries": {}}', "'entries' must be a list"),
        ('{"entries": [], "extra": 1}', "only an 'entries' list"),
        ('{"entries": [{"entry": {}, "signature": "x"}]}', "entry 0 has no 'node' name"),
        ('{"entries": [{"entry": {"node": "holyrood"}}]}', "only 'entry' and 'signature'"),
    ],
)
def test_a_malformed_file_is_refused_with_what_is_wrong(
    tmp_path: Path, anchors: dict, text: str, message: str
) -> None:
    path = tmp_path / "directory.json"
    path.write_text(text)

    with pytest.raises(DirectoryError, match=message):
        Directory.load(path, anchors)


def test_a_missing_file_is_refused(tmp_path: Path, anchors: dict) -> None:
    with pytest.raises(DirectoryError, match="cannot read directory"):
        Directory.load(tmp_path / "absent.json", anchors)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"serial": "3"}, "'serial' must be a non-negative integer"),
        ({"exchange_endpoint": "no-port"}, "'exchange_endpoint' must be host:port"),
        ({"federation_endpoint": "host:70000"}, "'federation_endpoint' must be host:port"),
        ({"ca_cert_pem": "not a certificate"}, "'ca_cert_pem' does not hold PEM certificates"),
        ({"issued_at": "2026-11-21T10:00:00"}, "must include a time zone"),
        ({"signing_keys": []}, "at least one key"),
        ({"suspended": True}, r"unknown fields \['suspended'\]"),
        ({"serves": [{"record_type": "PASSPORT", "subject_kinds": ["nino"]}]}, "PASSPORT"),
        ({"serves": [{"record_type": "PERSON", "subject_kinds": ["postcode"]}]}, "known kinds"),
        (
            {
                "serves": [
                    {
                        "record_type": "PERSON",
                        "subject_kinds": ["nino"],
                        "registration_prefixes": ["SC-"],
                    }
                ]
            },
            "only for subject kind 'registration_id'",
        ),
    ],
)
def test_an_operator_cannot_sign_a_malformed_entry(
    entries: dict[str, dict[str, Any]], directory_keys: dict, change: dict, message: str
) -> None:
    with pytest.raises(DirectoryError, match=message):
        sign_entry(dict(entries["holyrood"], **change), directory_keys["holyrood"])


def test_a_signed_but_malformed_entry_is_refused_on_load(
    tmp_path: Path, entries: dict[str, dict[str, Any]], directory_keys: dict, anchors: dict
) -> None:
    # Signed without sign_entry's checks, as a careless tool might.
    bad_key = {"kid": "holyrood-1", "public_key_pem": "garbage"}
    entry = dict(entries["holyrood"], signing_keys=[bad_key])
    signature = directory_keys["holyrood"].sign(canonical_json(entry))
    item = {"entry": entry, "signature": base64.urlsafe_b64encode(signature).decode()}
    path = write(tmp_path / "directory.json", [item])

    with pytest.raises(DirectoryError, match="key holyrood-1 is not a PEM public key"):
        Directory.load(path, anchors)


def test_providers_match_record_type_subject_kind_and_registration_prefix(
    tmp_path: Path, entries: dict[str, dict[str, Any]], directory_keys: dict, anchors: dict
) -> None:
    directory = Directory.load(signed_file(tmp_path, entries, directory_keys), anchors)

    assert directory.providers("BIRTH_REGISTRATION", "registration_id", "SC-2021-000123") == [
        "holyrood"
    ]
    assert directory.providers("BIRTH_REGISTRATION", "registration_id", "EW-2021-000123") == [
        "whitehall"
    ]
    assert directory.providers("BIRTH_REGISTRATION", "registration_id", "NI-2021-1") == []
    assert directory.providers("HEALTH_SUMMARY", "chi_number", "0101011234") == ["holyrood"]
    assert directory.providers("HEALTH_SUMMARY", "hc_number", "3200000010") == ["stormont"]
    assert directory.providers("HEALTH_SUMMARY", "nino", "QQ123456C") == []


def test_both_keys_of_a_rotation_resolve(
    tmp_path: Path,
    entries: dict[str, dict[str, Any]],
    directory_keys: dict,
    anchors: dict,
    node_keys: dict[str, Ed25519PrivateKey],
) -> None:
    new_key = Ed25519PrivateKey.generate()
    entries["holyrood"]["signing_keys"].append(key_item("holyrood", new_key))
    directory = Directory.load(signed_file(tmp_path, entries, directory_keys), anchors)

    old_kid = public_key_kid("holyrood", node_keys["holyrood"].public_key())
    new_kid = public_key_kid("holyrood", new_key.public_key())
    assert old_kid != new_kid
    assert raw(directory.signing_key("holyrood", old_kid)) == raw(node_keys["holyrood"])
    assert raw(directory.signing_key("holyrood", new_kid)) == raw(new_key)


def test_an_unknown_signing_key_is_a_peer_rejection(
    tmp_path: Path, entries: dict[str, dict[str, Any]], directory_keys: dict, anchors: dict
) -> None:
    directory = Directory.load(signed_file(tmp_path, entries, directory_keys), anchors)
    whitehall_kid = entries["whitehall"]["signing_keys"][0]["kid"]

    # A key published by whitehall does not speak for holyrood.
    with pytest.raises(PeerRejected, match="holyrood has no signing key"):
        directory.signing_key("holyrood", whitehall_kid)
    with pytest.raises(PeerRejected, match="not in the federation directory"):
        directory.signing_key("cardiff", whitehall_kid)


def test_the_ca_bundle_holds_every_administrations_ca(
    tmp_path: Path,
    entries: dict[str, dict[str, Any]],
    directory_keys: dict,
    anchors: dict,
    ca_pems: dict[str, str],
) -> None:
    directory = Directory.load(signed_file(tmp_path, entries, directory_keys), anchors)

    bundle = x509.load_pem_x509_certificates(directory.ca_bundle_pem())

    expected = {x509.load_pem_x509_certificate(pem.encode()) for pem in ca_pems.values()}
    assert set(bundle) == expected


def test_a_kid_is_the_node_and_a_key_thumbprint() -> None:
    key = Ed25519PrivateKey.generate().public_key()

    kid = public_key_kid("holyrood", key)

    assert kid.startswith("holyrood-")
    assert len(kid.removeprefix("holyrood-")) == 16
    assert public_key_kid("holyrood", key) == kid


def raw(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
