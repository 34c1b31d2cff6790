"""Fuzzing of what users hand to slmshift: trace imports, manifests, keys and store URLs.

Each property states that arbitrary input either works or raises one of our documented error
types, whose message names the bad value, and that a failed import writes nothing.
"""

from __future__ import annotations

import io
import json
import os
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slmshift.records import RecordError
from slmshift.slm.base import MANIFEST_NAME, ManifestError, SLMManifest
from slmshift.store import StoreError, TraceStore
from slmshift.store.encryption import KEY_ENV, OLD_KEYS_ENV, EncryptionError, StoreKey, keys_from_env
from tests.store_records import make_record

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
record_fields = st.sampled_from(
    ["id", "messages", "response", "tools", "usage", "started_at", "output_kind", "metadata",
     "schema_version", "agent", "latency_ms", "role", "content", "tool_calls", "name"]
)
record_like = st.dictionaries(record_fields | st.text(max_size=8), json_values, max_size=8)


def _valid_line(index: int) -> str:
    return make_record(index).to_json()


lines = st.one_of(
    st.builds(_valid_line, st.integers(0, 50)),
    record_like.map(json.dumps),
    st.builds(lambda message: json.dumps({"messages": [message]}), record_like),
    st.text(max_size=40),
)


@FUZZ
@given(st.lists(lines, min_size=1, max_size=6))
def test_import_writes_all_lines_or_nothing(tmp_path_factory, file_lines):
    store = TraceStore(str(tmp_path_factory.mktemp("fuzz") / "traces.db"))
    try:
        store.add_many([make_record(1000)])
        try:
            added = store.import_jsonl(io.StringIO("\n".join(file_lines)))
        except RecordError as exc:
            assert "line" in str(exc) and "nothing was imported" in str(exc)
            assert store.count() == 1
        else:
            assert store.count() == 1 + added
    finally:
        store.close()


@FUZZ
@given(st.binary(max_size=60))
def test_import_of_arbitrary_bytes_raises_only_record_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "in.jsonl"
    path.write_bytes(data)
    store = TraceStore("memory://")
    try:
        store.import_jsonl(path)
    except RecordError as exc:
        assert str(path) in str(exc)
        assert store.count() == 0


@FUZZ
@given(st.one_of(json_values, st.dictionaries(
    st.sampled_from(["kind", "base_model", "task", "labels", "metrics", "manifest_version",
                     "hyperparameters", "output_kind"]),
    json_values, max_size=6,
)))
def test_manifest_load_raises_only_manifest_error(tmp_path_factory, data):
    directory = tmp_path_factory.mktemp("model")
    (directory / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    try:
        manifest = SLMManifest.load(directory)
    except ManifestError as exc:
        assert MANIFEST_NAME in str(exc) or "kind" in str(exc)
    else:
        assert isinstance(manifest.kind, str) and isinstance(manifest.base_model, str)


@FUZZ
@given(st.binary(max_size=80))
def test_manifest_load_of_arbitrary_bytes_raises_only_manifest_error(tmp_path_factory, data):
    directory = tmp_path_factory.mktemp("model")
    (directory / MANIFEST_NAME).write_bytes(data)
    with pytest.raises(ManifestError):
        manifest = SLMManifest.load(directory)
        assert isinstance(manifest.kind, str)  # a valid manifest by chance passes through
        raise ManifestError("loaded")


@FUZZ
@given(st.text(max_size=60), st.text(max_size=30))
def test_key_env_raises_only_encryption_error_without_echoing_the_key(key_text, old_keys):
    try:
        keys = keys_from_env({KEY_ENV: key_text, OLD_KEYS_ENV: old_keys})
    except EncryptionError as exc:
        message = str(exc)
        assert KEY_ENV in message or OLD_KEYS_ENV in message
        if len(key_text.strip()) > 8:
            assert key_text.strip() not in message
    else:
        assert all(isinstance(key, StoreKey) for key in keys)


def test_key_file_readable_by_others_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "store.key"
    path.write_text(StoreKey.generate().to_base64())
    path.chmod(0o644)
    with pytest.raises(EncryptionError, match=r"chmod 600"):
        keys_from_env({"SLMSHIFT_STORE_KEY_FILE": str(path)})
    path.chmod(0o600)
    assert len(keys_from_env({"SLMSHIFT_STORE_KEY_FILE": str(path)})) == 1


@FUZZ
@given(
    st.text(alphabet=string.ascii_lowercase + "+-.", min_size=1, max_size=12).filter(
        lambda scheme: scheme not in ("sqlite", "memory", "postgresql", "postgres", "postgresql+psycopg")
    ),
    st.text(max_size=30),
)
def test_unknown_store_url_scheme_names_the_url_and_the_choices(scheme, rest):
    url = f"{scheme}://{rest}"
    with pytest.raises(StoreError, match="Unsupported trace store URL") as caught:
        TraceStore(url)
    assert repr(url) in str(caught.value)


@pytest.mark.postgres
@FUZZ
@given(
    st.text(alphabet=string.ascii_letters + string.digits + "_-%", min_size=1, max_size=20),
    st.text(alphabet=string.ascii_letters + string.digits + "_-%", min_size=1, max_size=20),
)
def test_postgres_url_with_bad_user_or_database_raises_store_error(postgres_server, user, database):
    # Only 127.0.0.1 and no query string, so fuzzing never sends traffic anywhere else.
    url = f"postgresql://{user}@127.0.0.1:{postgres_server.port}/{database}"
    try:
        TraceStore(url, keys=[]).close()
    except StoreError as exc:
        assert "127.0.0.1" in str(exc)
    else:
        assert user == "postgres" and database == "postgres"


def test_sqlite_url_without_a_path_names_the_fix():
    with pytest.raises(StoreError, match=r"sqlite:///relative/path\.db"):
        TraceStore("sqlite://")


plan_node = st.dictionaries(
    st.sampled_from(["node", "task", "base_model", "adapter", "endpoint", "adapter_name", "validation",
                     "fallback", "promotion", "max_new_tokens", "load_options", "mode"]),
    json_values | st.dictionaries(
        st.sampled_from(["mode", "canary_share", "labels", "min_confidence", "json_schema", "seed"]),
        json_values, max_size=3,
    ),
    max_size=6,
)
plan_like = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"version": st.sampled_from([1, 1, 2, "1", None]), "nodes": st.lists(plan_node, max_size=3)},
        optional={"agent": json_values},
    ),
)


@FUZZ
@given(plan_like, st.sampled_from([".yaml", ".json"]))
def test_plan_load_raises_only_plan_error(tmp_path_factory, data, suffix):
    from slmshift.converters.plan import ConversionPlan, PlanError

    path = tmp_path_factory.mktemp("plan") / f"plan{suffix}"
    path.write_text(json.dumps(data), encoding="utf-8")
    try:
        plan = ConversionPlan.load(path)
    except PlanError as exc:
        assert str(path) in str(exc) or "plan" in str(exc).lower()
    else:
        assert all(isinstance(entry.node, str) for entry in plan.nodes)


@FUZZ
@given(st.binary(max_size=80), st.sampled_from([".yaml", ".json"]))
def test_plan_load_of_arbitrary_bytes_raises_only_plan_error(tmp_path_factory, data, suffix):
    from slmshift.converters.plan import ConversionPlan, PlanError

    path = tmp_path_factory.mktemp("plan") / f"plan{suffix}"
    path.write_bytes(data)
    try:
        ConversionPlan.load(path)
    except PlanError as exc:
        assert str(path) in str(exc) or "plan" in str(exc).lower()


@pytest.mark.postgres
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(lines, min_size=1, max_size=6))
def test_postgres_import_writes_all_lines_or_nothing(postgres_url, file_lines):
    with TraceStore(postgres_url, keys=[]) as store:
        before = store.count()
        try:
            added = store.import_jsonl(io.StringIO("\n".join(file_lines)))
        except RecordError as exc:
            assert "nothing was imported" in str(exc)
            assert store.count() == before
        else:
            assert store.count() == before + added


@pytest.mark.parametrize("keys", ["c2VjcmV0", [b"raw bytes"], ["c2VjcmV0"]])
def test_keys_of_the_wrong_type_name_the_type_not_the_value(tmp_path, keys):
    with pytest.raises(EncryptionError, match=r"Invalid keys of type .*StoreKey") as caught:
        TraceStore(str(tmp_path / "traces.db"), keys=keys)
    assert "c2VjcmV0" not in str(caught.value)


@pytest.mark.postgres
def test_postgres_url_with_a_non_utf8_escape_names_the_fix(postgres_server):
    with pytest.raises(StoreError, match=r"Invalid PostgreSQL URL .*must encode UTF-8"):
        TraceStore(f"postgresql://postgres@127.0.0.1:{postgres_server.port}/%80", keys=[])
