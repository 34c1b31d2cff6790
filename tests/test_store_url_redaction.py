"""Store URLs shown in messages and logs never carry their secrets.

No PostgreSQL server is needed: port 1 on 127.0.0.1 refuses the connection, which is the
error path that names the URL.
"""

from __future__ import annotations

import pytest

from slmshift.cli import main
from slmshift.store import StoreError, TraceStore
from slmshift.store.base import redact_url

QUERY_URL = "postgresql://admin@127.0.0.1:1/db?password=QueryPw999&sslmode=disable"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://me:hunter2@h/db", "postgresql://me:***@h/db"),
        ("postgresql://me@h/db?password=QueryPw999&sslmode=disable", "postgresql://me@h/db?password=***&sslmode=disable"),
        ("postgresql://h/db?sslmode=require&sslpassword=KeyPw1", "postgresql://h/db?sslmode=require&sslpassword=***"),
        ("postgresql://me:a@b@h/db?PASSWORD=c", "postgresql://me:***@h/db?PASSWORD=***"),
        ("traces/local.db", "traces/local.db"),
    ],
)
def test_redact_url_masks_user_and_query_passwords(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_query_password_stays_out_of_store_error() -> None:
    with pytest.raises(StoreError, match=r"password=\*\*\*&sslmode=disable") as caught:
        TraceStore(QUERY_URL, keys=[])
    assert "QueryPw999" not in str(caught.value)
    assert "QueryPw999" not in repr(caught.value)


def test_query_password_stays_out_of_cli_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traces", "list", "--store", QUERY_URL]) == 2
    captured = capsys.readouterr()
    assert "Failed to connect" in captured.err
    assert "QueryPw999" not in captured.out + captured.err


def test_unsupported_url_error_masks_password() -> None:
    with pytest.raises(StoreError, match="Unsupported trace store URL") as caught:
        TraceStore("mysql://me:Secret55@h/db?token=Tok66")
    assert "Secret55" not in str(caught.value)
    assert "Tok66" not in str(caught.value)


def test_demo_closing_lines_mask_store_password() -> None:
    from slmshift.commands.demo import artifact_paths

    class NoOutputs:
        def outputs_of(self, step: str) -> dict[str, str]:
            return {}

    paths = artifact_paths(NoOutputs(), QUERY_URL)

    assert paths["traces"] == "postgresql://admin@127.0.0.1:1/db?password=***&sslmode=disable"


@pytest.mark.parametrize(
    "url",
    ["postgresql://me@127.0.0.1:1/db?password=Leak%ZZ42", "postgresql://me:Leak%ZZ42@127.0.0.1:1/db"],
)
def test_driver_message_quoting_password_is_masked(url: str) -> None:
    with pytest.raises(StoreError, match="invalid percent-encoded token") as caught:
        TraceStore(url, keys=[])
    assert "Leak" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_unparseable_url_keeps_text_but_masks_secrets():
    assert redact_url("a://[") == "a://["
    assert redact_url("a://") == "a://"

    masked = redact_url("postgresql://admin:Hunter2x@[bad/db?password=QueryPw999")

    assert "Hunter2x" not in masked
    assert "QueryPw999" not in masked
    assert masked.startswith("postgresql://admin:***@[bad")
