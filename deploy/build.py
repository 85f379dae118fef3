"""`python -m deploy.build dist/axly-api.zip`: the zip that the pipeline deploys.

Runtime dependencies are the wheels for Azure's Python 3.11 on Linux x86_64 (Debian
bullseye, glibc 2.31), whatever machine builds them: manylinux2014 (glibc 2.17) binary
wheels only, so a build on a newer runner never picks a wheel needing a newer glibc. They
go where the Python worker looks, `.python_packages/lib/site-packages`; the app's own
files follow, minus what `.funcignore` excludes (gitignore rules, as Core Tools and
Azure/functions-action read it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pathspec

SITE_PACKAGES = Path(".python_packages/lib/site-packages")
WHEEL_PLATFORM = [
    "--platform=manylinux2014_x86_64",
    "--python-version=3.11",
    "--implementation=cp",
    "--only-binary=:all:",
]


def app_files(root: Path) -> Iterator[Path]:
    """Every file under `root` that .funcignore does not exclude, relative to `root`."""
    ignore = pathspec.GitIgnoreSpec.from_lines((root / ".funcignore").read_text().splitlines())
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory).relative_to(root)
        # Prune ignored directories (and .git, which never ships) instead of walking them.
        dirnames[:] = sorted(
            name
            for name in dirnames
            if name != ".git" and not ignore.match_file(f"{(here / name).as_posix()}/")
        )
        for name in sorted(filenames):
            if not ignore.match_file((here / name).as_posix()):
                yield here / name


def install_dependencies(requirements: Path, target: Path) -> None:
    subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"--target={target}",
            *WHEEL_PLATFORM,
            f"--requirement={requirements}",
        ],
        check=True,
    )


def build(root: Path, output: Path) -> None:
    """Write the package for the project at `root` to `output`."""
    with tempfile.TemporaryDirectory() as staging:
        install_dependencies(root / "requirements.txt", Path(staging) / SITE_PACKAGES)
        output.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as package:
            for path in app_files(root):
                package.write(root / path, path.as_posix())
            for path in sorted(Path(staging).rglob("*")):
                if path.is_file():
                    package.write(path, path.relative_to(staging).as_posix())


def main(argv: list[str]) -> None:
    output = Path(argv[0] if argv else "dist/axly-api.zip")
    build(Path.cwd(), output)
    print(f"Built {output}")


if __name__ == "__main__":
    main(sys.argv[1:])
