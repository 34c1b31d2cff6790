"""Tests of redaction: planted personal data and secrets, in several languages and scripts, must
not reach the stored bytes, and one value keeps one placeholder throughout a record.

The model is replayed (a hosted LLM cannot be reached here); Presidio and SQLite are real.
"""

from __future__ import annotations

import re

import pytest
from langchain_core.messages import AIMessage

from slmshift.curation.redaction import Redactor
from slmshift.records import CallRecord, Message, ToolCall

# One planted value of every kind the default redactor must remove, with its entity stem.
PLANTED = {
    "EMAIL": "jana.novak@example.com",
    "PHONE": "+49 30 901820",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "IBAN": "DE89 3704 0044 0532 0130 00",
    "IP_ADDRESS": "203.0.113.77",
    "US_SSN": "536-22-8140",
    "CRYPTO": "1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
    "URL": "https://intranet.example.org/accounts/42",
    "OPENAI_API_KEY": "sk-proj-Zq3XvN8mK2pL5tR7wY9aB1cD4eF6gH0j",
    "AWS_ACCESS_KEY": "AKIAQ3EGRSN7XK2PLM4T",
    "GITHUB_TOKEN": "ghp_8fK2mQ9xL4vN7pR1sT6wY3zA5bC0dE2gH4jK",
    "SLACK_TOKEN": "xoxb-2841-9920-Q8aZkLmN4pRt",
    "GOOGLE_API_KEY": "AIzaSyD4kQ9xL2mN7pR1sT6wY3zA5bC0dE2gH4j",
    "BEARER_TOKEN": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl",
    "PASSWORD": "Tr0ub4dor&3x",
}
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"

SENTENCES = [
    # German
    "Bitte überweisen Sie an IBAN {IBAN}, meine E-Mail ist {EMAIL} und Telefon {PHONE}.",
    # Japanese, with no spaces around the values
    "カード{CREDIT_CARD}の件です。メールは{EMAIL}、社会保障番号{US_SSN}です。",
    # Arabic, right to left
    "عنوان IP الخاص بي هو {IP_ADDRESS} والمحفظة {CRYPTO} شكرا",
    # Emoji right beside the values
    "🔑{OPENAI_API_KEY}🔑 and 🚀{AWS_ACCESS_KEY}🚀 see {URL} 🙂",
    "Token ghp: {GITHUB_TOKEN}, slack {SLACK_TOKEN}, google {GOOGLE_API_KEY}",
    "Authorization: Bearer {BEARER_TOKEN} then connect to postgres://svc:{PASSWORD}@db.internal/app",
]


@pytest.fixture(scope="module")
def redactor():
    return Redactor()


def planted_record() -> CallRecord:
    user_texts = [sentence.format(**PLANTED) for sentence in SENTENCES]
    messages = [Message("system", "You are a bank assistant.")]
    messages += [Message("user", text) for text in user_texts]
    messages.append(Message("user", f"Here is my key:\n{PRIVATE_KEY}"))
    response = Message(
        "assistant",
        f"Thanks, I will e-mail {PLANTED['EMAIL']} now.",
        tool_calls=(
            ToolCall(
                name="send_email",
                arguments={"to": PLANTED["EMAIL"], "cc": [{"address": "ops@example.net"}], "card": PLANTED["CREDIT_CARD"]},
                id="call_1",
            ),
        ),
    )
    return CallRecord(messages=tuple(messages), response=response, node="support", agent="bank")


def test_redactor_removes_every_planted_value(redactor):
    redacted = redactor(planted_record())
    text = redacted.to_json()
    for entity, value in PLANTED.items():
        assert value not in text, f"{entity} value left in the record"
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in text
    assert "ops@example.net" not in text


def test_same_value_gets_same_placeholder(redactor):
    redacted = redactor(planted_record())
    german = redacted.messages[1].text
    japanese = redacted.messages[2].text
    email_placeholder = re.search(r"<EMAIL_\d+>", german).group(0)
    assert email_placeholder in japanese
    assert redacted.response.tool_calls[0].arguments["to"] == email_placeholder
    assert email_placeholder in redacted.response.text
    assert redacted.response.tool_calls[0].arguments["cc"][0]["address"] != email_placeholder


def test_placeholders_keep_surrounding_text(redactor):
    redacted = redactor(planted_record())
    assert redacted.messages[1].text.startswith("Bitte überweisen Sie an IBAN <IBAN_1>, meine E-Mail ist <EMAIL_1>")
    assert redacted.messages[2].text == "カード<CREDIT_CARD_1>の件です。メールは<EMAIL_1>、社会保障番号<US_SSN_1>です。"
    assert redacted.messages[3].text == "عنوان IP الخاص بي هو <IP_ADDRESS_1> والمحفظة <CRYPTO_1> شكرا"
    assert redacted.messages[4].text == "🔑<OPENAI_API_KEY_1>🔑 and 🚀<AWS_ACCESS_KEY_1>🚀 see <URL_1> 🙂"


def test_redaction_leaves_original_record_unchanged(redactor):
    record = planted_record()
    redactor(record)
    assert PLANTED["EMAIL"] in record.to_json()


def test_clean_text_is_left_alone(redactor):
    record = CallRecord(messages=(Message("user", "Calculate math.factorial of 5 with np.array"),), response=Message("assistant", "card_arrival"))
    assert redactor(record) is record


def test_invalid_card_number_is_kept(redactor):
    assert redactor.redact_text("order 4111 1111 1111 1112 shipped") == "order 4111 1111 1111 1112 shipped"


def test_capture_redactor_keeps_values_off_disk(redactor, tmp_path):
    from langchain_core.messages import HumanMessage, SystemMessage

    from slmshift import LangChainTraceHandler, TraceStore
    from slmshift.demo.replay import ReplayChatModel

    record = planted_record()
    user_texts = [message.text for message in record.messages if message.role == "user"]
    model = ReplayChatModel(answers={user_texts[-1].strip(): f"Noted, {PLANTED['EMAIL']}."})
    path = tmp_path / "traces.db"
    store = TraceStore(path)
    handler = LangChainTraceHandler(store, agent="bank", redactor=redactor)
    model.invoke([SystemMessage("You are a bank assistant."), *map(HumanMessage, user_texts)], config={"callbacks": [handler]})
    handler.flush()
    assert store.count() == 1
    store.close()

    stored = b"".join(file.read_bytes() for file in tmp_path.iterdir() if file.is_file())
    for entity, value in PLANTED.items():
        assert value.encode("utf-8") not in stored, f"{entity} value reached the SQLite file"
    assert b"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in stored
    assert "<EMAIL_1>".encode() in stored


def test_curate_store_writes_redacted_copies(redactor, tmp_path):
    from slmshift import TraceStore
    from slmshift.curation import CurationConfig, curate_store

    raw = TraceStore(tmp_path / "raw.db")
    raw.add_many([planted_record()])
    curated_path = tmp_path / "curated.db"
    curated = TraceStore(curated_path)
    report = curate_store(raw, curated, CurationConfig(redactor=redactor))
    curated.close()

    assert report.redacted_records == 1
    assert report.redacted_values >= len(PLANTED)
    stored = b"".join(file.read_bytes() for file in tmp_path.iterdir() if file.name.startswith("curated"))
    for entity, value in PLANTED.items():
        assert value.encode("utf-8") not in stored, f"{entity} value reached the curated store"
    assert PLANTED["EMAIL"] in next(raw.records()).to_json()
    raw.close()


def test_curate_store_into_source_raises(tmp_path):
    from slmshift import TraceStore
    from slmshift.curation import curate_store

    store = TraceStore("memory://")
    with pytest.raises(ValueError, match="destination is the source store"):
        curate_store(store, store)
