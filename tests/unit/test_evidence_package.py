"""Evidence packages: built, signed and verified on plain inputs; any byte changed in any member, an added
or removed member, or another key is named by the verifier; the service key is made once, owner-only."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gshp.cli import main
from gshp.evidence import EvidenceError, PublicKey, ServiceKey, verify_package, write_package

FILES = {"incident.json": json.dumps({"id": "inc-1", "site": "宛城区人民医院"}, ensure_ascii=False).encode(),
         "readings.csv": b"ts,site,meter,rate_m3h,total_m3\n" + b"2026-05-05T08:00:00+08:00,hospital,E1,80,1000\n" * 50,
         "audit.jsonl": b'{"seq":1}\n{"seq":2}\n',
         "report.html": "<html><body>外排事件</body></html>".encode()}
AT = datetime(2026, 5, 5, 8, 0, tzinfo=UTC)


def build_package(files: Mapping[str, bytes | Path], key: ServiceKey, at: datetime,
                  about: Mapping[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    write_package(out, files, key, at, about)
    return out.getvalue()


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> ServiceKey:
    return ServiceKey.load_or_create(tmp_path_factory.mktemp("state") / "evidence-key.pem")


@pytest.fixture(scope="module")
def package(key: ServiceKey) -> bytes:
    return build_package(FILES, key, AT, {"incident": "inc-1"})


def rezip(data: bytes, change: dict[str, bytes | None]) -> bytes:
    """The package re-zipped cleanly with members replaced (None: removed) or added."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename not in change:
                dst.writestr(info, src.read(info))
            elif (body := change[info.filename]) is not None:
                dst.writestr(info, body)
        for name, body in change.items():
            if name not in src.namelist() and body is not None:
                dst.writestr(name, body)
    return out.getvalue()


def test_an_intact_package_verifies_with_the_service_key_and_without_it(key: ServiceKey, package: bytes) -> None:
    ok = verify_package(package, key.public)
    assert ok.files == tuple(FILES) and ok.key_given and ok.fingerprint == key.public.fingerprint
    assert ok.manifest["about"] == {"incident": "inc-1"} and ok.manifest["created_at"] == "2026-05-05T08:00:00+00:00"
    assert [f["name"] for f in ok.manifest["files"]] == list(FILES)
    assert not verify_package(package).key_given
    assert verify_package(package, PublicKey.from_pem(key.public.pem())).key_given


@pytest.mark.parametrize("name", [*FILES, "manifest.json"])
def test_a_byte_changed_in_any_member_is_named(package: bytes, name: str) -> None:
    with zipfile.ZipFile(io.BytesIO(package)) as z:
        body = bytearray(z.read(name))
    body[len(body) // 2] ^= 0x01
    with pytest.raises(EvidenceError) as err:
        verify_package(rezip(package, {name: bytes(body)}))
    assert err.value.file == name and "altered" in str(err.value)


@pytest.mark.parametrize("name", [*FILES, "manifest.json"])
def test_a_byte_flipped_in_the_archive_itself_is_named(package: bytes, name: str) -> None:
    with zipfile.ZipFile(io.BytesIO(package)) as z:
        info = z.getinfo(name)
    # the member's data starts after its local header (30 bytes, its name, its extra field)
    raw = bytearray(package)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0x40
    with pytest.raises(EvidenceError) as err:
        verify_package(bytes(raw))
    assert err.value.file == name


def test_a_manifest_rewritten_to_match_an_altered_file_fails_its_signature(package: bytes) -> None:
    forged = b"ts,site,meter,rate_m3h,total_m3\n"
    with zipfile.ZipFile(io.BytesIO(package)) as z:
        manifest = json.loads(z.read("manifest.json"))
    for f in manifest["files"]:
        if f["name"] == "readings.csv":
            f["sha256"], f["bytes"] = hashlib.sha256(forged).hexdigest(), len(forged)
    with pytest.raises(EvidenceError) as err:
        verify_package(rezip(package, {"readings.csv": forged, "manifest.json": json.dumps(manifest).encode()}))
    assert err.value.file == "manifest.json" and "signature" in str(err.value)


def test_a_package_resigned_with_another_key_fails_against_the_service_key(key: ServiceKey, tmp_path: Path) -> None:
    other = ServiceKey.load_or_create(tmp_path / "other.pem")
    forged = build_package({**FILES, "readings.csv": b"nothing here\n"}, other, AT)
    assert verify_package(forged).fingerprint == other.public.fingerprint, "self-consistent, but not ours"
    with pytest.raises(EvidenceError) as err:
        verify_package(forged, key.public)
    assert err.value.file == "manifest.json" and "another key" in str(err.value)


def test_an_added_or_removed_member_is_named(package: bytes) -> None:
    with pytest.raises(EvidenceError) as err:
        verify_package(rezip(package, {"photo.jpg": b"\xff\xd8"}))
    assert err.value.file == "photo.jpg" and "not listed" in str(err.value)
    with pytest.raises(EvidenceError) as err:
        verify_package(rezip(package, {"audit.jsonl": None}))
    assert err.value.file == "audit.jsonl" and "missing" in str(err.value)
    with pytest.raises(EvidenceError) as err:
        verify_package(b"PK\x03\x04 not really")
    assert err.value.file is None and "zip" in str(err.value)


def test_the_service_key_is_made_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "state" / "evidence-key.pem"
    first = ServiceKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in path.read_bytes() and list(path.parent.iterdir()) == [path]
    assert ServiceKey.load_or_create(path).public.raw == first.public.raw, "the same key at every start"
    os.chmod(path, 0o644)
    with pytest.raises(EvidenceError, match="chmod 600"):
        ServiceKey.load_or_create(path)


def test_member_names_must_be_plain(key: ServiceKey) -> None:
    for bad in ("../etc/passwd", "a/b.csv", "manifest.json", ""):
        with pytest.raises(EvidenceError):
            build_package({bad: b"x"}, key, AT)


def test_the_verify_command_exits_0_when_intact_and_1_naming_the_altered_file(
        key: ServiceKey, package: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad, pem = tmp_path / "good.zip", tmp_path / "bad.zip", tmp_path / "key.pem"
    good.write_bytes(package)
    pem.write_bytes(key.public.pem())
    with zipfile.ZipFile(io.BytesIO(package)) as z:
        html = z.read("report.html").replace("外排".encode(), "正常".encode())
    bad.write_bytes(rezip(package, {"report.html": html}))
    assert main(["evidence", "verify", str(good), "--key", str(pem)]) == 0
    assert "intact 校验通过" in capsys.readouterr().out
    assert main(["evidence", "verify", str(bad), "--key", str(pem)]) == 1
    assert "report.html: altered" in capsys.readouterr().err
    assert main(["evidence", "verify", str(good)]) == 0
    assert "pass --key" in capsys.readouterr().err
    assert main(["evidence", "verify", str(tmp_path / "missing.zip")]) == 2


def test_the_third_party_check_in_the_docs_accepts_a_package_and_refuses_an_altered_one(
        key: ServiceKey, package: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    text = (Path(__file__).parents[2] / "docs" / "evidence.md").read_text(encoding="utf-8")
    snippet = text.split("### Without gshp", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gshp-evidence-key.pem").write_bytes(key.public.pem())
    (tmp_path / "evidence.zip").write_bytes(package)
    exec(compile(snippet, "docs/evidence.md", "exec"), {})
    assert "intact: incident.json, readings.csv, audit.jsonl, report.html" in capsys.readouterr().out
    (tmp_path / "evidence.zip").write_bytes(rezip(package, {"readings.csv": b"ts\n"}))
    with pytest.raises(AssertionError, match=r"readings\.csv was altered"):
        exec(compile(snippet, "docs/evidence.md", "exec"), {})


def test_any_byte_changed_anywhere_in_the_archive_is_refused(key: ServiceKey) -> None:
    # a small package, every one of its bytes flipped in turn: the contents, every zip header and directory
    # entry, the end record — none may change unnoticed, and a change in a member's content names it
    small = build_package({"incident.json": b'{"id":"inc-1"}', "宛城区.csv": b"ts,E1\n1,2\n"}, key,
                          datetime(2026, 5, 5, 8, 0, 3, tzinfo=UTC), {"incident": "inc-1"})
    verify_package(small, key.public)
    with zipfile.ZipFile(io.BytesIO(small)) as z:
        contents = {i.filename: range(i.header_offset + 30 + len(i.filename.encode()),
                                      i.header_offset + 30 + len(i.filename.encode()) + i.file_size)
                    for i in z.infolist()}
    for at in range(len(small)):
        raw = bytearray(small)
        raw[at] ^= 0x01
        with pytest.raises(EvidenceError) as err:
            verify_package(bytes(raw), key.public)
        for name, span in contents.items():
            if at in span:
                assert err.value.file == name, (at, str(err.value))
    with pytest.raises(EvidenceError, match="bytes were added"):
        verify_package(small + b"\x00", key.public)


def test_a_member_given_as_a_file_streams_in_and_a_package_file_verifies_in_place(key: ServiceKey,
                                                                                    tmp_path: Path) -> None:
    readings = tmp_path / "readings.csv"
    with readings.open("wb") as f:
        for _ in range(3):  # larger than a copy chunk
            f.write(b"2026-05-05T08:00:00.000Z,hospital,E1,extraction,80.0,1000.0,,\n" * 20_000)
    package = tmp_path / "evidence.zip"
    with package.open("wb") as out:
        write_package(out, {"incident.json": b"{}", "readings.csv": readings}, key, AT)
    ok = verify_package(package, key.public)
    assert ok.files == ("incident.json", "readings.csv")
    assert ok.manifest["files"][1]["bytes"] == readings.stat().st_size
    raw = bytearray(package.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # inside readings.csv
    package.write_bytes(bytes(raw))
    with pytest.raises(EvidenceError) as err:
        verify_package(package, key.public)
    assert err.value.file == "readings.csv"
    (tmp_path / "empty.zip").write_bytes(b"")
    with pytest.raises(EvidenceError, match="not a readable zip"):
        verify_package(tmp_path / "empty.zip")
