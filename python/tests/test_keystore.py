"""Keystore through the binding: create, reopen, status, errors by name."""
import os

import pytest

import mqe2e


def test_create_reopen_status(tmp_path):
    path = str(tmp_path / "ks")
    with mqe2e.Keystore.create(path, "backend-1", "pw-one") as ks:
        assert ks.client_id == "backend-1"
        assert ks.sender_id != 0
        pub = ks.identity_public()
        assert len(pub["sign_public"]) == 32 and len(pub["dh_public"]) == 32
        assert ks.authority() is None and ks.credential() is None
        assert ks.groups() == []
    with mqe2e.Keystore.open(path, b"pw-one") as ks:
        assert ks.client_id == "backend-1"
        assert ks.identity_public() == pub
        st = ks.status()
        assert st["client_id"] == "backend-1" and st["authority"] is None


def test_wrong_passphrase_is_auth(tmp_path):
    path = str(tmp_path / "ks")
    mqe2e.Keystore.create(path, "c1", "right").close()
    with pytest.raises(mqe2e.AuthError) as e:
        mqe2e.Keystore.open(path, "wrong")
    assert e.value.name == "auth" and e.value.code == mqe2e.errors.CODES["auth"]


def test_second_open_is_locked(tmp_path):
    path = str(tmp_path / "ks")
    with mqe2e.Keystore.create(path, "c1", "pw"):
        with pytest.raises(mqe2e.LockedError):
            mqe2e.Keystore.open(path, "pw")
    mqe2e.Keystore.open(path, "pw").close()  # released on close


def test_create_twice_and_missing(tmp_path):
    path = str(tmp_path / "ks")
    mqe2e.Keystore.create(path, "c1", "pw").close()
    with pytest.raises(mqe2e.ExistsError):
        mqe2e.Keystore.create(path, "c1", "pw")
    with pytest.raises(mqe2e.NotFoundError):
        mqe2e.Keystore.open(str(tmp_path / "none"), "pw")


def test_passphrase_sources(tmp_path, monkeypatch):
    path = str(tmp_path / "ks")
    pf = tmp_path / "pass"
    pf.write_text("from-file\n")
    mqe2e.Keystore.create(path, "c1", passphrase_file=str(pf)).close()
    monkeypatch.setenv("MQE2E_PASSPHRASE", "from-file")
    mqe2e.Keystore.open(path).close()
    monkeypatch.delenv("MQE2E_PASSPHRASE")
    with pytest.raises(ValueError):
        mqe2e.Keystore.open(path)


def test_invalid_client_id(tmp_path):
    with pytest.raises(mqe2e.InvalidArgError):
        mqe2e.Keystore.create(str(tmp_path / "ks"), "bad id\n", "pw")
