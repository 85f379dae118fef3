"""`python -m deploy.build dist/axly-api.zip`: the zip that the pipeline deploys.

Runtime dependencies are the wheels for Azure's Python 3.11 on Linux x86_64 (Debian
bullseye, glibc 2.31), whatever machine builds them: manylinux2014 (glibc 2.17) binary
wheels only, so a build on a newer runner never picks a wheel needing a newer glibc. They
go where the Python worker looks, `.python_packages/lib/site-packages`; the app's own
files follow: those git tracks, minus what `.funcignore` excludes (gitignore rules, as Core
Tools and Azure/functions-action read it), each Python module with its bytecode.

The bytecode: Azure runs the package as it is (mounted read-only on Flex Consumption), so
Python cannot cache what it compiles there, and every cold worker would compile our ~200 KB
of modules from source again — about a tenth of its first requests — while the
dependencies' bytecode ships with them (pip compiles what it installs). Ours is compiled
here as "unchecked hash" bytecode (PEP 552): used without looking at the source's time
stamp, which a zip does not keep faithfully; the package never changes once built.
"""

from __future__ import annotations

import importlib.util
import py_compile
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pathspec

SITE_PACKAGES = Path(".python_packages/lib/site-packages")
AZURE_CACHE_TAG = "cpython-311"  # Azure's Python 3.11: bytecode of another version is ignored
WHEEL_PLATFORM = [
    "--platform=manylinux2014_x86_64",
    "--python-version=3.11",
    "--implementation=cp",
    "--only-binary=:all:",
]


def app_files(root: Path) -> Iterator[Path]:
    """The files git tracks under `root` that .funcignore does not exclude, relative to
    `root`: whatever else lies in a working tree (a scratch file, node_modules, a local
    database) never ships, whether or not .funcignore thought of it."""
    ignore = pathspec.GitIgnoreSpec.from_lines((root / ".funcignore").read_text().splitlines())
    for name in sorted(set(_git_files(root)) - set(_git_files(root, "--deleted"))):
        if not ignore.match_file(name):
            yield Path(name)


def _git_files(root: Path, *options: str) -> list[str]:
    listed = subprocess.run(  # noqa: S603 - fixed arguments
        ["git", "ls-files", "-z", *options],  # noqa: S607 - git from PATH, as a developer runs it
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    return [name for name in listed.decode().split("\0") if name]


def bytecode(source: Path, name: PurePosixPath) -> tuple[str, bytes]:
    """Where the module `name` (its path in the package) keeps its bytecode, and that
    bytecode: compiled from `source`, valid whatever the source's time stamp."""
    if sys.implementation.cache_tag != AZURE_CACHE_TAG:
        raise RuntimeError(f"Build the package with CPython 3.11 ({AZURE_CACHE_TAG} bytecode)")
    with tempfile.TemporaryDirectory() as scratch:
        compiled = Path(scratch) / "module.pyc"
        py_compile.compile(
            str(source),
            cfile=str(compiled),
            dfile=name.as_posix(),
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        return importlib.util.cache_from_source(name.as_posix()), compiled.read_bytes()


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
                if path.suffix == ".py":
                    package.writestr(*bytecode(root / path, PurePosixPath(path.as_posix())))
            for path in sorted(Path(staging).rglob("*")):
                if path.is_file():
                    package.write(path, path.relative_to(staging).as_posix())


def main(argv: list[str]) -> None:
    output = Path(argv[0] if argv else "dist/axly-api.zip")
    build(Path.cwd(), output)
    print(f"Built {output}")


if __name__ == "__main__":
    main(sys.argv[1:])
