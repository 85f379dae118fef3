"""`python -m deploy.check dist/axly-api.zip`: would this package run on Azure?

Fails (exit 1, naming each problem) when:
- an ELF file needs a GLIBC symbol version above 2.31, the glibc of Azure's Python 3.11
  image (Debian bullseye): such a library fails to load, and with it the indexing of the
  whole app, so every route would answer 404;
- a clean Python 3.11 (isolated, no site-packages: only the package on its path, as the
  worker puts it there) cannot import `function_app` and index it as the Python worker
  does (`get_functions()`, each function's JSON), or indexes other functions or routes than
  the app does here;
- the package holds development or test files (tests, devhost, bench, deploy, infra,
  .venv, .venv-infra, node_modules, dist, local.settings.json, .pgdata, caches, coverage
  data, bytecode other than the app's own as deploy/build.py compiles it);
- README's licence tables do not name exactly the distributions and bundled native
  libraries the package ships (deploy/licences.py).
Prints the package's size, its function count and the highest GLIBC version it needs.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

from deploy.build import AZURE_CACHE_TAG
from deploy.index_app import describe
from deploy.licences import licence_problems

MAX_GLIBC = (2, 31)
SITE_PACKAGES = ".python_packages/lib/site-packages"
# Any path component with one of these names is not part of the app.
FORBIDDEN_PARTS = {
    "tests",
    "devhost",
    "bench",
    "deploy",
    ".venv",
    ".venv-infra",
    "infra",
    "node_modules",
    "dist",
    ".pgdata",
    ".git",
    ".github",
    ".ci",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".hypothesis",
    ".schemathesis",
    "htmlcov",
    "local.settings.json",
    ".coverage",
    "coverage.xml",
}


@dataclass
class Report:
    size: int = 0
    functions: int = 0
    elf_files: int = 0
    max_glibc: tuple[int, ...] = (0,)
    problems: list[str] = field(default_factory=list)


def glibc_versions(data: bytes) -> set[tuple[int, ...]]:
    """GLIBC_x.y[.z] versions an ELF file requires (its .gnu.version_r entries)."""
    versions = set()
    for section in ELFFile(io.BytesIO(data)).iter_sections():
        if isinstance(section, GNUVerNeedSection):
            for _, auxiliaries in section.iter_versions():
                for aux in auxiliaries:
                    name = aux.name
                    if name.startswith("GLIBC_") and name[6:].replace(".", "").isdigit():
                        versions.add(tuple(int(part) for part in name[6:].split(".")))
    return versions


def forbidden(names: Iterable[str]) -> list[str]:
    """Paths that are development or test files, not the app (the app's bytecode is part of
    it: that of a module the package ships, for Azure's Python, as deploy/build.py writes it;
    any other cached bytecode is a development leftover)."""
    names = list(names)
    shipped = set(names)
    found = []
    for name in names:
        parts = PurePosixPath(name).parts
        outside_dependencies = not name.startswith(SITE_PACKAGES + "/")
        if (
            any(part in FORBIDDEN_PARTS or part.startswith(".coverage.") for part in parts)
            and outside_dependencies
        ) or (outside_dependencies and "__pycache__" in parts and not _built(name, shipped)):
            found.append(name)
    return found


def _built(name: str, shipped: set[str]) -> bool:
    """Is `name` the bytecode deploy/build.py ships for a module of the package?"""
    module = PurePosixPath(name)
    if module.parent.name != "__pycache__" or not module.name.endswith(f".{AZURE_CACHE_TAG}.pyc"):
        return False
    source = module.parent.parent / (module.name.removesuffix(f".{AZURE_CACHE_TAG}.pyc") + ".py")
    return source.as_posix() in shipped


def check_elf_files(package: zipfile.ZipFile, report: Report) -> None:
    for info in package.infolist():
        with package.open(info) as member:
            if member.read(4) != b"\x7fELF":
                continue
        try:
            versions = glibc_versions(package.read(info))
        except ELFError as exc:
            report.problems.append(f"{info.filename}: unreadable ELF file ({exc})")
            continue
        report.elf_files += 1
        report.max_glibc = max([report.max_glibc, *versions])
        too_new = sorted(v for v in versions if v > MAX_GLIBC)
        if too_new:
            needed = ".".join(map(str, too_new[-1]))
            report.problems.append(f"{info.filename} needs GLIBC_{needed} (Azure has 2.31)")


def index_in_clean_interpreter(package_dir: Path) -> list[list[object]]:
    """Import and index the unpacked package with `python -I -S`: no site-packages (not
    even this virtual environment's), no environment variables, an empty working directory."""
    result = subprocess.run(  # noqa: S603 - our interpreter, our script
        [
            sys.executable,
            "-I",
            "-S",
            str(Path(__file__).with_name("index_app.py")),
            str(package_dir),
        ],
        capture_output=True,
        text=True,
        cwd=package_dir.parent,
        env={},
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise RuntimeError(lines[-1])
    indexed: list[list[object]] = json.loads(result.stdout)
    return indexed


def check(path: Path, expected: Sequence[Sequence[object]]) -> Report:
    """Check the package at `path` against the app's own `expected` function list."""
    report = Report(size=path.stat().st_size)
    with zipfile.ZipFile(path) as package:
        report.problems += [
            f"{name}: not part of the app" for name in forbidden(package.namelist())
        ]
        check_elf_files(package, report)
        with tempfile.TemporaryDirectory() as scratch:
            package_dir = Path(scratch) / "package"
            package.extractall(package_dir)
            try:
                indexed = index_in_clean_interpreter(package_dir)
            except RuntimeError as exc:
                report.problems.append(f"a clean Python cannot index function_app: {exc}")
                return report
    report.functions = len(indexed)
    if indexed != expected:
        missing = [f for f in expected if f not in indexed]
        extra = [f for f in indexed if f not in expected]
        report.problems.append(f"indexed functions differ: missing {missing}, unexpected {extra}")
    return report


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "dist/axly-api.zip")
    import function_app  # the app as this checkout defines it

    report = check(path, describe(function_app.app))
    with zipfile.ZipFile(path) as package:
        report.problems += licence_problems(package.namelist(), Path("README.md").read_text())
    glibc = ".".join(map(str, report.max_glibc))
    print(
        f"{path}: {report.size:,} bytes ({report.size / 2**20:.1f} MiB), "
        f"{report.functions} functions indexed by a clean Python 3.11, "
        f"{report.elf_files} ELF files needing at most GLIBC_{glibc} (limit 2.31)"
    )
    for problem in report.problems:
        print(f"  PROBLEM: {problem}", file=sys.stderr)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
