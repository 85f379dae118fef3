"""README's licence tables name exactly what the package ships: every distribution and
every native library a wheel bundles (deploy/licences.py; deploy/check.py applies it to the
built zip, this test to requirements.txt resolved in this environment, which installs the
same wheels for the same Linux / CPython 3.11)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deploy.licences import bundled_libraries, licence_problems

SITE_PACKAGES = ".python_packages/lib/site-packages"
README = Path("README.md").read_text()


def runtime_closure(requirements: Path) -> list[metadata.Distribution]:
    """The installed distributions requirements.txt needs, its extras and their
    dependencies included (markers evaluated for this interpreter and platform)."""
    found: dict[str, metadata.Distribution] = {}
    pending = [
        Requirement(line.split("#")[0])
        for line in requirements.read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found[name] = distribution = metadata.distribution(name)
        for dependency in map(Requirement, distribution.requires or []):
            extras = requirement.extras or {""}
            if dependency.marker is None or any(
                dependency.marker.evaluate({"extra": extra}) for extra in extras
            ):
                pending.append(dependency)
    return list(found.values())


def package_names(distributions: list[metadata.Distribution]) -> list[str]:
    """The member names those distributions would have in the package."""
    names = []
    for distribution in distributions:
        name = distribution.metadata["Name"].replace("-", "_")  # as the wheel names its folder
        names.append(f"{SITE_PACKAGES}/{name}-{distribution.version}.dist-info/METADATA")
        names += [f"{SITE_PACKAGES}/{file.as_posix()}" for file in distribution.files or []]
    return names


def test_the_licence_tables_name_exactly_what_requirements_txt_ships():
    names = package_names(runtime_closure(Path("requirements.txt")))
    assert "libpq" in bundled_libraries(names)  # psycopg[binary]'s extra was followed
    assert licence_problems(names, README) == []


def test_a_dependency_missing_from_the_table_or_listed_in_vain_is_named():
    names = [
        f"{SITE_PACKAGES}/psycopg_binary-3.3.9.dist-info/METADATA",
        f"{SITE_PACKAGES}/Left_Pad-1.0.dist-info/METADATA",
        f"{SITE_PACKAGES}/psycopg_binary.libs/libpq-e9b5c9ac.so.5.18",
        f"{SITE_PACKAGES}/psycopg_binary.libs/libzstd-0123abcd.so.1.5.5",
    ]
    problems = licence_problems(names, README)
    assert "distribution left-pad: shipped, but not in README's licence table" in problems
    assert "library libzstd: shipped, but not in README's licence table" in problems
    assert "distribution sqlalchemy: in README's licence table, but not shipped" in problems
    assert "library libssl: in README's licence table, but not shipped" in problems
    assert not any("psycopg-binary" in problem or "libpq" in problem for problem in problems)
