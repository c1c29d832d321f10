"""Admin secrets: masked URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.db import masked_url, role_url
from shared.devstack import _banner, dev_ports


def test_dev_stack_banner_masks_the_database_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = role_url("postgresql://h:5432/placement", "platform_admin", "p:a@s/s%w#rd x'y")
    _banner(url, "127.0.0.1:9092", tmp_path, dev_ports())
    out = capsys.readouterr().out
    assert "platform_admin:***@h:5432/placement" in out
    assert "p%3Aa" not in out and "w#rd" not in out
    assert masked_url("not a url") == "(unparsable database URL)"
