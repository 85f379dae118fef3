"""The trouble-code catalogue: J2012 structure by our code, descriptions from python-OBD."""

import logging
import sys

import pytest

from api.services import dtc
from api.services.dtc import explain, find_codes


@pytest.mark.parametrize(
    ("code", "system", "defined_by", "subsystem", "description"),
    [
        (
            "P0420",
            "powertrain",
            "generic",
            "auxiliary emission controls",
            "Catalyst System Efficiency Below Threshold",
        ),
        (
            "p0301",
            "powertrain",
            "generic",
            "ignition system or misfire",
            "Cylinder 1 Misfire Detected",
        ),
        ("P0A80", "powertrain", "generic", "hybrid propulsion", None),
        (
            "P1234",
            "powertrain",
            "manufacturer-specific",
            "fuel and air metering (injector circuit)",
            None,
        ),
        ("P3000", "powertrain", "manufacturer-specific", None, None),
        ("P3400", "powertrain", "generic", "cylinder deactivation", "Cylinder Deactivation System"),
        (
            "P2A00",
            "powertrain",
            "generic",
            "fuel and air metering and auxiliary emission controls",
            "O2 Sensor Circuit Range/Performance",
        ),
        (
            "P2300",
            "powertrain",
            "generic",
            "ignition system or misfire",
            "Ignition Coil 'A' Primary Control Circuit Low",
        ),
        (
            "P2700",
            "powertrain",
            "generic",
            "transmission",
            "Transmission Friction Element 'A' Apply Time Range/Performance",
        ),
        ("P3500", "powertrain", "generic", None, None),
        ("B0001", "body", "generic", None, None),
        ("B1234", "body", "manufacturer-specific", None, None),
        ("C2100", "chassis", "manufacturer-specific", None, None),
        (
            "U0100",
            "network communication",
            "generic",
            "network communication",
            "Lost Communication With ECM/PCM A",
        ),
        (
            "U0001",
            "network communication",
            "generic",
            "network electrical",
            "High Speed CAN Communication Bus",
        ),
        ("U1000", "network communication", "manufacturer-specific", None, None),
        ("U3000", "network communication", "reserved", None, None),
    ],
)
def test_structure_and_description(code, system, defined_by, subsystem, description) -> None:
    info = explain(code)
    assert info.code == code.upper()
    assert (info.system, info.defined_by, info.subsystem) == (system, defined_by, subsystem)
    assert info.meaning == description


def test_unknown_codes_are_never_given_a_meaning() -> None:
    line = explain("C0035").for_prompt()
    assert line == "C0035: no standard description (meaning not known to us) [chassis, generic]"


@pytest.mark.parametrize("bad", ["P04200", "X0420", "P4420", "P04G0", ""])
def test_malformed_codes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not an OBD-II"):
        explain(bad)


def test_codes_are_found_in_text_upper_cased_once_each() -> None:
    texts = ["P0420", "saw p0420 then U0100, and XP0300 or P04201", None, "b1000."]
    assert find_codes(texts) == ["P0420", "U0100", "B1000"]


def test_without_python_obd_codes_keep_their_structure_and_get_no_meaning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for module in ("obd", "obd.codes"):  # importing them now raises ImportError
        monkeypatch.setitem(sys.modules, module, None)
    dtc._generic_descriptions.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="api.services.dtc"):
            first, again = explain("P0420"), explain("P0301")
    finally:
        dtc._generic_descriptions.cache_clear()
    assert (first.system, first.defined_by, first.subsystem, first.meaning) == (
        "powertrain",
        "generic",
        "auxiliary emission controls",
        None,
    )
    assert first.for_prompt().startswith("P0420: no standard description")
    assert again.meaning is None
    (warning,) = [r for r in caplog.records if r.name == "api.services.dtc"]  # logged once
    assert "python-OBD" in warning.getMessage()
