"""`make dev` writes local.settings.json with a fresh secret, never the example's."""

import json
from pathlib import Path

from devhost.local_settings import write_local_settings


def test_local_settings_get_a_fresh_random_secret(tmp_path: Path) -> None:
    example = Path("local.settings.example.json")
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    write_local_settings(example, first)
    write_local_settings(example, second)
    original = json.loads(example.read_text())["Values"]
    values = json.loads(first.read_text())["Values"]
    assert values.keys() == original.keys()
    assert values["JWT_SECRET"] != original["JWT_SECRET"]
    assert len(values["JWT_SECRET"]) >= 32
    assert values["JWT_SECRET"] != json.loads(second.read_text())["Values"]["JWT_SECRET"]
