"""Admin secrets: the bootstrap token's length, what service processes inherit, masked URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.db import masked_url, role_url
from shared.devstack import _banner, dev_ports, process_env
from shared.settings import AdminSettings, load_settings


def test_bootstrap_admin_token_shorter_than_32_characters_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOOTSTRAP_ADMIN_TOKEN", "twenty-chars-token-x")
    with pytest.raises(SystemExit) as exit_info:
        load_settings(AdminSettings)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "BOOTSTRAP_ADMIN_TOKEN: Value error, must be at least 32 characters" in err
    assert "twenty-chars-token-x" not in err
    monkeypatch.setenv("BOOTSTRAP_ADMIN_TOKEN", "x" * 32)
    token = load_settings(AdminSettings).bootstrap_admin_token
    assert token is not None and token.get_secret_value() == "x" * 32


def test_service_processes_of_the_dev_stack_get_no_admin_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOOTSTRAP_ADMIN_TOKEN", "b" * 40)
    monkeypatch.setenv("MIGRATIONS_DATABASE_URL", "postgresql://admin:adminpw@db/placement")
    monkeypatch.setenv("MATCHING_SERVICE_DB_PASSWORD", "matching-pw")
    monkeypatch.setenv("PATIENT_SERVICE_DB_PASSWORD", "p:a@s/s%w#rd x'y")
    env = process_env("patient_service", "postgresql://postgres@127.0.0.1/placement", "b:9092")
    assert not {
        "BOOTSTRAP_ADMIN_TOKEN",
        "MIGRATIONS_DATABASE_URL",
        "MATCHING_SERVICE_DB_PASSWORD",
        "PATIENT_SERVICE_DB_PASSWORD",
    } & set(env)
    assert env["DATABASE_URL"] == role_url(
        "postgresql://postgres@127.0.0.1/placement", "patient_service", "p:a@s/s%w#rd x'y"
    )


def test_dev_stack_banner_masks_the_database_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = role_url("postgresql://h:5432/placement", "platform_admin", "p:a@s/s%w#rd x'y")
    _banner(url, "127.0.0.1:9092", tmp_path, dev_ports())
    out = capsys.readouterr().out
    assert "platform_admin:***@h:5432/placement" in out
    assert "p%3Aa" not in out and "w#rd" not in out
    assert masked_url("not a url") == "(unparsable database URL)"
