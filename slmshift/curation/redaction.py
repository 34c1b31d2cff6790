"""Redaction of personal data and secrets in call records, with Microsoft Presidio.

`Redactor` finds values with Presidio's analyzer and replaces them with Presidio's anonymizer.
By default it uses pattern recognizers only, so no NER model is needed: Presidio's phone,
credit card (Luhn checksum), IBAN (checksum), IP address, US SSN and crypto wallet (checksum)
recognizers, plus slmshift's own patterns for e-mail addresses, URLs, API keys (OpenAI, AWS,
GitHub, Slack, Google), bearer tokens, PEM private keys, passwords in URLs and `password=`
assignments. When a spaCy English model is installed and `use_ner=True`, names and places
are found as well.

Within one record, the same value always gets the same placeholder (`<EMAIL_1>`, `<EMAIL_2>`,
...), in every message, in the response and in tool-call arguments, so a conversation stays
coherent. A `Redactor` is a callable `(CallRecord) -> CallRecord`, the form capture handlers
take as their `redactor` option.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from slmshift.records import CallRecord, Message, ToolCall

logger = logging.getLogger(__name__)

# Placeholder stems for Presidio's entity names; other entities keep their own name.
PLACEHOLDER_NAMES = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "IBAN_CODE": "IBAN",
    "PERSON": "PERSON",
    "LOCATION": "LOCATION",
}

# Regions whose numbering plans the phone recognizer tries, besides numbers in + format.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "JP", "CN", "IN", "BR", "AE", "SA", "EG", "CA", "AU")

# Texts without any of these can hold none of the entities, so the analyzer is skipped.
_MAYBE_SENSITIVE = re.compile(
    r"[0-9@]|://|www\.|bearer|private key|password|passwd|secret|token|api[_-]?key"
    r"|sk-|akia|asia|gh[pousr]_|github_pat_|xox|aiza",
    re.IGNORECASE,
)

# Phone numbers have at least 7 digits, possibly split by spaces, dots, dashes or brackets.
_PHONE_CANDIDATE = re.compile(r"(?:\d[\s().\-/]{0,3}){6}\d")

# Non-ASCII characters are blanked before analysis. Python's \w and \b treat CJK and Arabic
# letters as word characters, so "カード4111..." hides the card number from \b-anchored
# patterns. One character is replaced by one space, so offsets stay valid on the original.
_NON_ASCII = re.compile(r"[^\x00-\x7f]")

# (entity, pattern name, regex, score); matched case-sensitively unless the regex starts with (?i).
SECRET_PATTERNS: tuple[tuple[str, str, str, float], ...] = (
    ("EMAIL", "email", r"(?<![\w.+%:/-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9-])", 1.0),
    ("URL", "url with scheme", r"(?i)\b(?:https?|ftp|wss?)://[^\s<>\"']+[^\s<>\"'.,;:!?)\]]", 0.6),
    ("URL", "www url", r"(?i)\bwww\.[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?:/[^\s<>\"']*[^\s<>\"'.,;:!?)\]])?", 0.6),
    ("OPENAI_API_KEY", "openai key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}", 1.0),
    ("AWS_ACCESS_KEY", "aws access key id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 1.0),
    ("GITHUB_TOKEN", "github token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b", 1.0),
    ("SLACK_TOKEN", "slack token", r"\bxox[abposre]-[A-Za-z0-9-]{10,}", 1.0),
    ("GOOGLE_API_KEY", "google api key", r"\bAIza[0-9A-Za-z_-]{35}", 1.0),
    ("BEARER_TOKEN", "bearer token", r"(?i)(?<=\bbearer\s{1,4})[A-Za-z0-9._~+/-]{8,}=*", 1.0),
    ("PRIVATE_KEY", "pem private key", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----", 1.0),
    ("PASSWORD", "password in url", r"(?<=://[^\s/:@]{1,128}:)[^\s/@]{1,256}(?=@)", 1.0),
    ("PASSWORD", "password assignment", r"(?i)(?<=\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token)\"?\s{0,3}[:=]\s{0,3}\"?)[^\s\"',;]{4,}", 0.9),
)

PRESIDIO_PATTERN_RECOGNIZERS = (
    "PhoneRecognizer",
    "CreditCardRecognizer",
    "IbanRecognizer",
    "IpRecognizer",
    "UsSsnRecognizer",
    "CryptoRecognizer",
)


class RedactionError(RuntimeError):
    """Presidio is missing or cannot be configured for redaction."""


@dataclass
class Placeholders:
    """Placeholders of one record: each distinct value of an entity gets the next number."""

    by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def placeholder(self, entity: str, value: str) -> str:
        key = (entity, value.strip())
        if key not in self.by_value:
            stem = PLACEHOLDER_NAMES.get(entity, entity)
            self.counts[stem] = self.counts.get(stem, 0) + 1
            self.by_value[key] = f"<{stem}_{self.counts[stem]}>"
        return self.by_value[key]

    @property
    def total(self) -> int:
        return len(self.by_value)


class Redactor:
    """Replace personal data and secrets in call records by numbered placeholders.

    Args:
        entities: Entity names to redact; `None` redacts every entity the recognizers find.
        use_ner: Also find names and places with a spaCy English model, when one is installed.
            With `True` and no model installed, a warning is logged and patterns alone run.
        score_threshold: Minimum Presidio score for a finding to be redacted.
        cache_size: Texts whose findings are cached; prompts repeat, so this saves most work.

    Raises:
        RedactionError: presidio-analyzer or presidio-anonymizer is not installed.
    """

    def __init__(
        self,
        *,
        entities: Iterable[str] | None = None,
        use_ner: bool = False,
        score_threshold: float = 0.3,
        cache_size: int = 100_000,
    ) -> None:
        self.entities = list(entities) if entities is not None else None
        self.score_threshold = score_threshold
        self._analyzer, self.ner_model = _build_analyzer(use_ner)
        self._anonymizer = _build_anonymizer()
        self._find_cached = lru_cache(maxsize=cache_size)(self._find)

    def __call__(self, record: CallRecord) -> CallRecord:
        return self.redact(record)

    def redact(self, record: CallRecord) -> CallRecord:
        """Return a copy of `record` with sensitive values replaced; the record is not changed.

        Message contents, response, tool-call arguments (string values at any depth, and raw
        argument text) and the error text are redacted. The copy's metadata gains
        `redactions`, the count of distinct values replaced.
        """
        placeholders = Placeholders()
        messages = tuple(self._redact_message(message, placeholders) for message in record.messages)
        response = self._redact_message(record.response, placeholders) if record.response else None
        error = self.redact_text(record.error, placeholders) if record.error else record.error
        if placeholders.total == 0:
            return record
        metadata = {**record.metadata, "redactions": placeholders.total}
        return record.replace(messages=messages, response=response, error=error, metadata=metadata)

    def redact_text(self, text: str, placeholders: Placeholders | None = None) -> str:
        """Return `text` with sensitive values replaced, numbering them in `placeholders`."""
        if not text or not _MAYBE_SENSITIVE.search(text):
            return text
        findings = self._find_cached(text)
        if not findings:
            return text

        from presidio_anonymizer.entities import OperatorConfig

        placeholders = placeholders if placeholders is not None else Placeholders()
        _number_in_text_order(text, findings, placeholders)
        operators = {
            entity: OperatorConfig(
                "custom", {"lambda": lambda value, entity=entity: placeholders.placeholder(entity, value)}
            )
            for entity in {finding.entity_type for finding in findings}
        }
        return self._anonymizer.anonymize(text=text, analyzer_results=list(findings), operators=operators).text

    def _find(self, text: str) -> tuple[Any, ...]:
        ascii_view = _NON_ASCII.sub(" ", text)
        findings = self._analyzer.analyze(
            ascii_view, language="en", entities=self.entities, score_threshold=self.score_threshold
        )
        if self.ner_model and ascii_view != text:
            findings += self._analyzer.analyze(
                text, language="en", entities=self.entities, score_threshold=self.score_threshold
            )
        return tuple(findings)

    def _redact_message(self, message: Message, placeholders: Placeholders) -> Message:
        content = _map_strings(message.content, lambda text: self.redact_text(text, placeholders))
        tool_calls = tuple(self._redact_call(call, placeholders) for call in message.tool_calls)
        if content == message.content and tool_calls == message.tool_calls:
            return message
        return Message(
            role=message.role,
            content=content,
            tool_calls=tool_calls,
            tool_call_id=message.tool_call_id,
            name=message.name,
        )

    def _redact_call(self, call: ToolCall, placeholders: Placeholders) -> ToolCall:
        redact = lambda text: self.redact_text(text, placeholders)  # noqa: E731
        arguments = _map_strings(call.arguments, redact)
        raw = redact(call.arguments_raw) if call.arguments_raw else call.arguments_raw
        if arguments == call.arguments and raw == call.arguments_raw:
            return call
        return ToolCall(name=call.name, arguments=arguments, id=call.id, arguments_raw=raw)


def _number_in_text_order(text: str, findings: Iterable[Any], placeholders: Placeholders) -> None:
    """Assign placeholder numbers from left to right; the anonymizer replaces right to left."""
    covered_until = -1
    for finding in sorted(findings, key=lambda item: (item.start, -item.score, -item.end)):
        if finding.start < covered_until:
            continue
        placeholders.placeholder(finding.entity_type, text[finding.start : finding.end])
        covered_until = finding.end


def _map_strings(value: Any, function: Any) -> Any:
    """Apply `function` to every string inside `value` (lists and dicts at any depth)."""
    if isinstance(value, str):
        return function(value)
    if isinstance(value, list):
        return [_map_strings(item, function) for item in value]
    if isinstance(value, tuple):
        return tuple(_map_strings(item, function) for item in value)
    if isinstance(value, dict):
        return {key: _map_strings(item, function) for key, item in value.items()}
    return value


def _build_analyzer(use_ner: bool) -> tuple[Any, str | None]:
    try:
        from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
        from presidio_analyzer import predefined_recognizers
    except ImportError as exc:
        raise RedactionError(
            "Redaction needs Microsoft Presidio: run `pip install 'slmshift[curate]'`."
        ) from exc

    registry = RecognizerRegistry(supported_languages=["en"])
    for name in PRESIDIO_PATTERN_RECOGNIZERS:
        recognizer_class = getattr(predefined_recognizers, name)
        if name == "PhoneRecognizer":
            registry.add_recognizer(_gated_phone_recognizer(recognizer_class))
        else:
            registry.add_recognizer(recognizer_class())

    for entity, pattern_name, regex, score in SECRET_PATTERNS:
        registry.add_recognizer(
            PatternRecognizer(
                supported_entity=entity,
                name=f"slmshift {pattern_name}",
                patterns=[Pattern(pattern_name, regex, score)],
                global_regex_flags=re.DOTALL | re.MULTILINE,
            )
        )

    ner_model = _installed_spacy_model() if use_ner else None
    if use_ner and ner_model is None:
        logger.warning("No spaCy English model is installed: redacting with patterns only.")
    nlp_engine = _nlp_engine(ner_model)
    if ner_model:
        registry.add_recognizer(predefined_recognizers.SpacyRecognizer(supported_entities=["PERSON", "LOCATION"]))
    analyzer = AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=["en"])
    return analyzer, ner_model


def _gated_phone_recognizer(phone_class: type) -> Any:
    """Return Presidio's phone recognizer, run only on texts with a phone-like digit run.

    The recognizer tries every region's numbering plan and costs milliseconds per text, while
    most texts hold no run of 7 or more digits and separators.
    """

    class GatedPhoneRecognizer(phone_class):
        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            if not _PHONE_CANDIDATE.search(text):
                return []
            return super().analyze(text, entities, nlp_artifacts)

    return GatedPhoneRecognizer(supported_regions=PHONE_REGIONS)


def _nlp_engine(spacy_model: str | None) -> Any:
    if spacy_model is None:
        from presidio_analyzer.nlp_engine import NoOpNlpEngine

        return NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])

    from presidio_analyzer.nlp_engine import NlpEngineProvider

    # NOTE: this path runs only where a spaCy English model is installed, which is not the
    # case on the machines the test suite runs on.
    configuration = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": spacy_model}]}
    return NlpEngineProvider(nlp_configuration=configuration).create_engine()


def _installed_spacy_model() -> str | None:
    try:
        import spacy.util
    except ImportError:
        return None
    for name in ("en_core_web_lg", "en_core_web_md", "en_core_web_sm", "en_core_web_trf"):
        if spacy.util.is_package(name):
            return name
    return None


def _build_anonymizer() -> Any:
    try:
        from presidio_anonymizer import AnonymizerEngine
    except ImportError as exc:
        raise RedactionError(
            "Redaction needs Microsoft Presidio: run `pip install 'slmshift[curate]'`."
        ) from exc
    return AnonymizerEngine()
