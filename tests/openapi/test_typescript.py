"""TypeScript types generated from the served document with openapi-typescript, type-checked
by tsc against `typescript/sample.ts` (what an app developer writes: minimal bodies, typed
headers and problems, narrowing a message's content).

The tools are the exact versions of `typescript/package-lock.json`, installed by `npm ci`
into the git-ignored `typescript/node_modules/` on the first run and again only when the
lock file changes (node and npm come with the machines; npm needs the registry once)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

TOOLS = Path(__file__).parent / "typescript"
INSTALLED_LOCK = TOOLS / "node_modules" / ".installed-lock-sha256"


def run(command: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def node_tools() -> Path:
    """`node_modules/.bin` with openapi-typescript and tsc, installed from the lock file."""
    npm = shutil.which("npm")
    assert npm, "npm is needed for the TypeScript contract test: apt-get install -y npm"
    lock = hashlib.sha256((TOOLS / "package-lock.json").read_bytes()).hexdigest()
    if not INSTALLED_LOCK.is_file() or INSTALLED_LOCK.read_text() != lock:
        installed = run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], TOOLS)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        INSTALLED_LOCK.write_text(lock)
    return TOOLS / "node_modules" / ".bin"


def test_generated_types_accept_minimal_bodies_and_type_the_responses(
    node_tools: Path, openapi_file: Path, tmp_path: Path
) -> None:
    for name in ("sample.ts", "tsconfig.json"):
        shutil.copy(TOOLS / name, tmp_path / name)
    generated = run(
        [node_tools / "openapi-typescript", openapi_file, "-o", tmp_path / "axly-api.ts"], tmp_path
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "warn" not in generated.stdout.lower() + generated.stderr.lower(), generated.stderr

    checked = run([node_tools / "tsc", "--project", tmp_path / "tsconfig.json"], tmp_path)

    assert checked.returncode == 0, checked.stdout + checked.stderr
