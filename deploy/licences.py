"""The README's licence tables against what a deployment package ships.

README "Licences and third-party data" has two tables: every Python distribution in the
package (`.python_packages/lib/site-packages/<name>-<version>.dist-info`) and every native
library a wheel bundles (`<package>.libs/libpq-1a2b3c4d.so.5`, as auditwheel vendors them).
Both must list exactly what ships, so a dependency added, dropped or pulled in anew cannot
go unnoticed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath

from packaging.utils import canonicalize_name

DISTRIBUTIONS_HEADING = "### Python distributions in the package"
LIBRARIES_HEADING = "### Native libraries bundled in those wheels"
# auditwheel's renaming of a vendored library: name, a hash of its contents, the soname rest.
_VENDORED = re.compile(r"(?P<name>.+?)-[0-9a-f]{8}\.so(\.|$)")


def distributions(names: Iterable[str]) -> set[str]:
    """Canonical names of the distributions whose .dist-info directories are in `names`."""
    found: set[str] = set()
    for name in names:
        for part in PurePosixPath(name).parts:
            if part.endswith(".dist-info"):
                found.add(canonicalize_name(part.removesuffix(".dist-info").split("-")[0]))
    return found


def bundled_libraries(names: Iterable[str]) -> set[str]:
    """Names (`libpq`) of the shared libraries vendored into `<package>.libs/` folders."""
    found: set[str] = set()
    for name in names:
        path = PurePosixPath(name)
        match = _VENDORED.match(path.name)
        if match and path.parent.name.endswith(".libs"):
            found.add(match["name"])
    return found


def table_names(readme: str, heading: str) -> set[str]:
    """The first column of the Markdown table under `heading` (header row excluded)."""
    lines = readme.split(f"\n{heading}\n", 1)[1].splitlines()
    rows = [line for line in lines[: _table_end(lines)] if line.startswith("|")]
    return {row.split("|")[1].strip().strip("`") for row in rows[2:]}


def _table_end(lines: list[str]) -> int:
    started = False
    for index, line in enumerate(lines):
        if line.startswith("|"):
            started = True
        elif started or line.startswith("#"):
            return index
    return len(lines)


def problems(shipped: set[str], listed: set[str], what: str) -> list[str]:
    """What the README's table for `what` misses or lists in vain."""
    shipped = {canonicalize_name(name) for name in shipped}
    canonical = {canonicalize_name(name): name for name in listed}
    missing = sorted(shipped - set(canonical))
    extra = sorted(name for key, name in canonical.items() if key not in shipped)
    return [f"{what} {name}: shipped, but not in README's licence table" for name in missing] + [
        f"{what} {name}: in README's licence table, but not shipped" for name in extra
    ]


def licence_problems(names: Iterable[str], readme: str) -> list[str]:
    """README licence tables against the package whose member names are `names`."""
    names = list(names)
    return problems(
        distributions(names), table_names(readme, DISTRIBUTIONS_HEADING), "distribution"
    ) + problems(bundled_libraries(names), table_names(readme, LIBRARIES_HEADING), "library")
