"""Create local.settings.json from the example, with a fresh random JWT_SECRET, so no two
developers (and no deployed app) share the example's placeholder secret."""

import json
import secrets
import sys
from pathlib import Path


def write_local_settings(example: Path, target: Path) -> None:
    settings = json.loads(example.read_text())
    settings["Values"]["JWT_SECRET"] = secrets.token_urlsafe(48)
    target.write_text(json.dumps(settings, indent=2) + "\n")


if __name__ == "__main__":
    write_local_settings(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"Wrote {sys.argv[2]} with a new random JWT_SECRET")
