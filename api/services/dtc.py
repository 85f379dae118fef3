"""OBD-II diagnostic trouble codes (DTCs): what a code means, for the model to reason with.

Two sources, behind `explain(code)`:
1. The code's structure per SAE J2012, decoded here for any well-formed code: the system
   (1st character), who defines it (generic vs manufacturer-specific, 2nd character) and
   the subsystem the 3rd character names where J2012 assigns one (P0/P1, P2, P34, U0; B
   and C codes, and the manufacturer ranges P30-P33, U1/U2, have no standard grouping).
2. The description from the generic P and U code table shipped with python-OBD (`obd`),
   loaded on first use. python-OBD is GPL-2.0-only: it stays a separately installed
   package that we import; its table is never copied into this repository. Without it,
   codes still get (1).
Codes the table lacks (every B and C code, manufacturer-specific codes) get the structure
only — never an invented meaning.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Literal

log = logging.getLogger(__name__)

CODE = re.compile(r"\b[PBCU][0-3][0-9A-F]{3}\b", re.IGNORECASE)

SYSTEMS = {"P": "powertrain", "B": "body", "C": "chassis", "U": "network communication"}

# J2012 third character of P0 codes; manufacturers follow the same grouping for P1.
P0_SUBSYSTEMS = {
    "0": "fuel and air metering and auxiliary emission controls",
    "1": "fuel and air metering",
    "2": "fuel and air metering (injector circuit)",
    "3": "ignition system or misfire",
    "4": "auxiliary emission controls",
    "5": "vehicle speed control and idle control system",
    "6": "computer and output circuits",
    "7": "transmission",
    "8": "transmission",
    "9": "transmission",
    "A": "hybrid propulsion",
    "B": "hybrid propulsion",
    "C": "hybrid propulsion",
}
P2_SUBSYSTEMS = {
    **dict.fromkeys("012A", "fuel and air metering and auxiliary emission controls"),
    "3": "ignition system or misfire",
    "4": "auxiliary emission controls",
    "5": "auxiliary inputs",
    "6": "computer and auxiliary outputs",
    **dict.fromkeys("789", "transmission"),
}
U0_SUBSYSTEMS = {
    "0": "network electrical",
    **dict.fromkeys("12", "network communication"),
    "3": "network software",
    "4": "network data",
}
SUBSYSTEMS = {
    "P0": P0_SUBSYSTEMS,
    "P1": P0_SUBSYSTEMS,
    "P2": P2_SUBSYSTEMS,
    "P3": {"4": "cylinder deactivation"},  # P3400-P34FF; P30-P33 are manufacturers'
    "U0": U0_SUBSYSTEMS,
}

Definer = Literal["generic", "manufacturer-specific", "reserved"]


@dataclass(frozen=True)
class DtcInfo:
    code: str
    system: str
    defined_by: Definer
    subsystem: str | None
    meaning: str | None  # the generic table's description; None: not in it, never guessed

    @property
    def generic(self) -> bool:
        return self.defined_by == "generic"

    def for_prompt(self) -> str:
        structure = f"{self.system}, {self.defined_by}"
        if self.subsystem:
            structure += f", subsystem: {self.subsystem}"
        meaning = self.meaning or "no standard description (meaning not known to us)"
        return f"{self.code}: {meaning} [{structure}]"


def defined_by(code: str) -> Definer:
    """Generic (ISO/SAE) or manufacturer-controlled, per J2012's ranges."""
    system, digit = code[0], code[1]
    if system == "P":
        if digit == "1" or (digit == "3" and code[2] in "0123"):  # P1xxx, P3000-P33FF
            return "manufacturer-specific"
        return "generic"
    if digit == "0":
        return "generic"
    if digit == "3":
        return "reserved"
    return "manufacturer-specific"  # B1/B2, C1/C2, U1/U2


@cache
def _generic_descriptions() -> dict[str, str]:
    """python-OBD's table; empty (structure only, no meanings) when it is not installed."""
    try:
        from obd.codes import DTC  # GPL-2.0-only, imported (never copied); slow to import
    except ImportError:
        log.warning("python-OBD is not installed: fault codes get no standard descriptions")
        return {}
    table: dict[str, str] = DTC
    return table


def explain(code: str) -> DtcInfo:
    """What a well-formed code means (raises ValueError for anything else)."""
    code = code.strip().upper()
    if not CODE.fullmatch(code):
        raise ValueError(f"{code!r} is not an OBD-II trouble code")
    return DtcInfo(
        code=code,
        system=SYSTEMS[code[0]],
        defined_by=defined_by(code),
        subsystem=SUBSYSTEMS.get(code[:2], {}).get(code[2]),
        meaning=_generic_descriptions().get(code),
    )


def find_codes(texts: Iterable[str | None]) -> list[str]:
    """Every trouble code in the texts, upper-cased, first occurrence first, no repeats."""
    found = (match.upper() for text in texts if text for match in CODE.findall(text))
    return list(dict.fromkeys(found))
