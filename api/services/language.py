"""The language a diagnosis is answered in, and everything the server writes in it.

Which language (`choose`), first match wins:
1. the request's `language` field (a BCP 47 tag; `es-MX` is answered in `es`);
2. the language the conversation was answered in so far (a follow-up keeps it);
3. the request's Accept-Language (RFC 9110 12.5.4: ranges by q-value, `q=0` refused);
4. DEFAULT_LANGUAGE.
A language asked for (1 or 3) that SUPPORTED_LANGUAGES lacks falls back to DEFAULT_LANGUAGE,
and the answer says so (`language_fallback`).

What is in each language (`TRANSLATIONS`): the instruction the model gets, the title
instruction, and every heading and label of the Markdown `answer`. SUPPORTED_LANGUAGES may
only name languages this table has (the settings refuse others), and a test renders every
one of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# A BCP 47 language tag as clients send it: a 2-3 letter language, then subtags (script,
# region, variant...). Only the language is matched (RFC 4647 lookup, truncated to it).
LANGUAGE_TAG = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,7}$"
_TAG = re.compile(LANGUAGE_TAG)
_Q_VALUE = re.compile(r"^q=(0(\.\d{0,3})?|1(\.0{0,3})?)$", re.IGNORECASE)


@dataclass(frozen=True)
class Translation:
    """What the server writes in one language."""

    name: str  # in English, for the model ("Spanish")
    reply_in: str  # the instruction, in the language itself
    severity: str
    severities: dict[str, str]  # low, medium, high, critical
    safe_to_drive: str
    safe: dict[str, str]  # yes, no, unknown
    likely_causes: str
    likelihoods: dict[str, str]  # high, medium, low: "(... likelihood)"
    check: str
    fault_codes: str
    next_steps: str
    questions: str


TRANSLATIONS: dict[str, Translation] = {
    "en": Translation(
        name="English",
        reply_in="Answer in English.",
        severity="Severity",
        severities={"low": "Low", "medium": "Medium", "high": "High", "critical": "Critical"},
        safe_to_drive="Safe to drive",
        safe={"yes": "Yes", "no": "No", "unknown": "Not sure"},
        likely_causes="Likely causes",
        likelihoods={
            "high": "high likelihood",
            "medium": "medium likelihood",
            "low": "low likelihood",
        },
        check="check",
        fault_codes="Fault codes",
        next_steps="Next steps",
        questions="Questions for you",
    ),
    "es": Translation(
        name="Spanish",
        reply_in="Responde en español.",
        severity="Gravedad",
        severities={"low": "Baja", "medium": "Media", "high": "Alta", "critical": "Crítica"},
        safe_to_drive="¿Se puede conducir?",
        safe={"yes": "Sí", "no": "No", "unknown": "No está claro"},
        likely_causes="Causas probables",
        likelihoods={
            "high": "probabilidad alta",
            "medium": "probabilidad media",
            "low": "probabilidad baja",
        },
        check="cómo comprobarlo",
        fault_codes="Códigos de avería",
        next_steps="Próximos pasos",
        questions="Preguntas para ti",
    ),
    "fr": Translation(
        name="French",
        reply_in="Réponds en français.",
        severity="Gravité",
        severities={"low": "Faible", "medium": "Moyenne", "high": "Élevée", "critical": "Critique"},
        safe_to_drive="Peut rouler",
        safe={"yes": "Oui", "no": "Non", "unknown": "Incertain"},
        likely_causes="Causes probables",
        likelihoods={
            "high": "probabilité élevée",
            "medium": "probabilité moyenne",
            "low": "probabilité faible",
        },
        check="à vérifier",
        fault_codes="Codes défaut",
        next_steps="Prochaines étapes",
        questions="Questions pour vous",
    ),
    "de": Translation(
        name="German",
        reply_in="Antworte auf Deutsch.",
        severity="Schweregrad",
        severities={"low": "Niedrig", "medium": "Mittel", "high": "Hoch", "critical": "Kritisch"},
        safe_to_drive="Fahrbereit",
        safe={"yes": "Ja", "no": "Nein", "unknown": "Unklar"},
        likely_causes="Wahrscheinliche Ursachen",
        likelihoods={
            "high": "hohe Wahrscheinlichkeit",
            "medium": "mittlere Wahrscheinlichkeit",
            "low": "geringe Wahrscheinlichkeit",
        },
        check="prüfen",
        fault_codes="Fehlercodes",
        next_steps="Nächste Schritte",
        questions="Fragen an Sie",
    ),
    "pt": Translation(
        name="Portuguese",
        reply_in="Responda em português.",
        severity="Gravidade",
        severities={"low": "Baixa", "medium": "Média", "high": "Alta", "critical": "Crítica"},
        safe_to_drive="Seguro para dirigir",
        safe={"yes": "Sim", "no": "Não", "unknown": "Incerto"},
        likely_causes="Causas prováveis",
        likelihoods={
            "high": "probabilidade alta",
            "medium": "probabilidade média",
            "low": "probabilidade baixa",
        },
        check="como verificar",
        fault_codes="Códigos de falha",
        next_steps="Próximos passos",
        questions="Perguntas para você",
    ),
}


@dataclass(frozen=True)
class AnswerLanguage:
    code: str  # one of SUPPORTED_LANGUAGES
    fallback: bool = False  # a language was asked for that is not supported

    @property
    def translation(self) -> Translation:
        return TRANSLATIONS[self.code]


def choose(
    *,
    asked: str | None,
    kept: str | None,
    accept_language: str | None,
    supported: Iterable[str],
    default: str,
) -> AnswerLanguage:
    """The language to answer in (see the module's doc)."""
    supported = tuple(supported)
    if asked is not None:
        return _supported_or_default(primary(asked), supported, default)
    if kept in supported:
        return AnswerLanguage(kept)
    ranges = accepted_ranges(accept_language)
    if not ranges:
        return AnswerLanguage(default)
    for tag in ranges:
        if tag == "*" or primary(tag) in supported:
            return AnswerLanguage(default if tag == "*" else primary(tag))
    return AnswerLanguage(default, fallback=True)


def primary(tag: str) -> str:
    """The language subtag of a tag (`pt-BR` → `pt`), lower-cased."""
    return tag.split("-", 1)[0].lower()


def accepted_ranges(header: str | None) -> list[str]:
    """Accept-Language's language ranges, most wanted first (a stable sort by q-value); ranges
    with q=0 (not acceptable) and malformed members are left out."""
    if not header:
        return []
    weighted: list[tuple[float, str]] = []
    for member in header.split(","):
        tag, *parameters = (part.strip() for part in member.split(";"))
        if not (tag == "*" or _TAG.fullmatch(tag)):
            continue
        q = 1.0
        if parameters:
            matched = _Q_VALUE.fullmatch(parameters[0].replace(" ", ""))
            if matched is None:
                continue
            q = float(matched.group(1))
        if q > 0:
            weighted.append((q, tag))
    weighted.sort(key=lambda item: -item[0])
    return [tag for _, tag in weighted]


def _supported_or_default(code: str, supported: tuple[str, ...], default: str) -> AnswerLanguage:
    if code in supported:
        return AnswerLanguage(code)
    return AnswerLanguage(default, fallback=True)
