"""The package check flags what would break on Azure: a library needing a newer glibc,
an app a clean interpreter cannot index, development files in the zip."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import azure.functions
import markupsafe
import werkzeug

from deploy.build import app_files, bytecode
from deploy.check import check, forbidden, glibc_versions

SITE_PACKAGES = ".python_packages/lib/site-packages"
FUNCTION_APP = """
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="vehicles/{vehicle_id}", methods=["GET", "PATCH"])
def vehicles_vehicle_id(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("ok")
"""
INDEXED = [["vehicles_vehicle_id", "vehicles/{vehicle_id}", ["GET", "PATCH"]]]


def elf_needing(*versions: str) -> bytes:
    """A minimal 64-bit shared object whose .gnu.version_r requires `versions` of libc.so.6,
    the way a compiled extension records the glibc symbol versions it links against."""
    dynstr = b"\0libc.so.6\0" + b"".join(v.encode() + b"\0" for v in versions)
    names = [dynstr.index(v.encode()) for v in versions]
    verneed = struct.pack("<HHIII", 1, len(versions), 1, 16, 0)
    for index, name in enumerate(names):
        last = index == len(names) - 1
        verneed += struct.pack("<IHHII", 0, 0, index + 2, name, 0 if last else 16)
    shstrtab = b"\0.dynstr\0.gnu.version_r\0.shstrtab\0"
    data_offset = 64
    offsets = [data_offset, data_offset + len(dynstr), data_offset + len(dynstr) + len(verneed)]
    section_offset = offsets[2] + len(shstrtab)

    def header(name: bytes, kind: int, offset: int, size: int, link: int = 0, info: int = 0):
        return struct.pack(
            "<IIQQQQIIQQ", shstrtab.index(name) if name else 0, kind, 0, 0, offset, size,
            link, info, 1, 0,
        )  # fmt: skip

    sections = (
        header(b"", 0, 0, 0)
        + header(b".dynstr", 3, offsets[0], len(dynstr))
        + header(b".gnu.version_r", 0x6FFFFFFE, offsets[1], len(verneed), link=1, info=1)
        + header(b".shstrtab", 3, offsets[2], len(shstrtab))
    )
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    elf_header = ident + struct.pack(
        "<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, section_offset, 0, 64, 0, 0, 64, 4, 3
    )
    return elf_header + dynstr + verneed + shstrtab + sections


def test_glibc_versions_are_read_from_the_version_needs():
    assert glibc_versions(elf_needing("GLIBC_2.34", "GLIBC_2.2.5")) == {(2, 34), (2, 2, 5)}


def test_other_version_needs_are_not_glibc():
    assert glibc_versions(elf_needing("GLIBCXX_3.4.29", "GLIBC_PRIVATE")) == set()


def test_dev_and_test_files_are_flagged_but_not_dependencies_own_folders():
    names = [
        "function_app.py",
        "api/routes/auth.py",
        "tests/test_docs.py",
        "devhost/host.py",
        "bench/__main__.py",
        ".venv/bin/python",
        ".venv-infra/bin/checkov",
        "infra/main.bicep",
        "tests/openapi/typescript/node_modules/typescript/package.json",
        "dist/axly-api.zip",
        "local.settings.json",
        ".pgdata/data/PG_VERSION",
        ".pytest_cache/v/cache/nodeids",
        ".hypothesis/examples/x",
        ".schemathesis/x",
        "coverage.xml",
        ".coverage",
        ".coverage.host.123",
        "api/__pycache__/db.cpython-311.pyc",
        f"{SITE_PACKAGES}/sqlalchemy/__pycache__/sql.cpython-311.pyc",
        f"{SITE_PACKAGES}/pint/testsuite/tests/test_x.py",
    ]
    assert forbidden(names) == names[2:19]


def test_the_apps_own_bytecode_ships_but_no_other():
    names = [
        "function_app.py",
        "__pycache__/function_app.cpython-311.pyc",
        "api/db.py",
        "api/__pycache__/db.cpython-311.pyc",
        "api/__pycache__/db.cpython-312.pyc",  # another Python's
        "api/__pycache__/gone.cpython-311.pyc",  # a module the package does not ship
        "api/__pycache__/db.cpython-311.opt-1.pyc",
    ]
    assert forbidden(names) == names[4:7]


def package(tmp_path: Path, files: Mapping[str, bytes | str]) -> Path:
    """A package zip with azure-functions and its dependencies (their Python sources only,
    taken from this environment) plus `files`."""
    path = tmp_path / "package.zip"
    with zipfile.ZipFile(path, "w") as zip_file:
        for module in (azure.functions, werkzeug, markupsafe):
            library = Path(str(module.__file__)).parent
            top = library.parent if module is azure.functions else library
            for source in library.rglob("*.py"):
                name = source.relative_to(top.parent).as_posix()
                zip_file.write(source, f"{SITE_PACKAGES}/{name}")
        for name, content in files.items():
            zip_file.writestr(name, content)
    return path


def test_a_clean_package_passes_and_reports_its_figures(tmp_path: Path):
    report = check(package(tmp_path, {"function_app.py": FUNCTION_APP}), INDEXED)
    assert report.problems == []
    assert report.functions == 1
    assert report.size > 0


def test_a_package_indexes_from_its_bytecode(tmp_path: Path):
    """What the build ships: the clean interpreter loads function_app from its bytecode,
    not from the source (here changed afterwards, as a zip's time stamps may be)."""
    source = tmp_path / "function_app.py"
    source.write_text(FUNCTION_APP)
    cached, compiled = bytecode(source, PurePosixPath("function_app.py"))
    assert cached == "__pycache__/function_app.cpython-311.pyc"
    files: dict[str, bytes | str] = {
        "function_app.py": "raise SystemExit('the source was run')",
        cached: compiled,
    }
    report = check(package(tmp_path, files), INDEXED)
    assert report.problems == []


def test_an_area_that_imports_what_the_package_lacks_fails(tmp_path: Path):
    """Areas are imported by their first invocation, not by indexing: the check imports them."""
    files = {
        "function_app.py": FUNCTION_APP,
        "api/__init__.py": "",
        "api/routes/__init__.py": "def routers():\n    import not_in_the_package\n",
    }
    report = check(package(tmp_path, files), INDEXED)
    assert report.problems == [
        "a clean Python cannot index function_app: "
        "ModuleNotFoundError: No module named 'not_in_the_package'"
    ]


def test_a_library_needing_glibc_2_34_fails(tmp_path: Path):
    elf = elf_needing("GLIBC_2.17", "GLIBC_2.34")
    zip_path = package(
        tmp_path, {"function_app.py": FUNCTION_APP, f"{SITE_PACKAGES}/bcrypt/_bcrypt.abi3.so": elf}
    )
    report = check(zip_path, INDEXED)
    assert report.problems == [
        f"{SITE_PACKAGES}/bcrypt/_bcrypt.abi3.so needs GLIBC_2.34 (Azure has 2.31)"
    ]
    assert (report.elf_files, report.max_glibc) == (1, (2, 34))


def test_forbidden_files_fail(tmp_path: Path):
    files = {"function_app.py": FUNCTION_APP, "tests/test_x.py": "", "local.settings.json": "{}"}
    report = check(package(tmp_path, files), INDEXED)
    assert report.problems == [
        "tests/test_x.py: not part of the app",
        "local.settings.json: not part of the app",
    ]


def test_an_app_that_imports_what_the_package_lacks_fails(tmp_path: Path):
    """The dev environment's site-packages are not on the clean interpreter's path."""
    app = "import sqlalchemy\n" + FUNCTION_APP
    report = check(package(tmp_path, {"function_app.py": app}), INDEXED)
    assert report.problems == [
        "a clean Python cannot index function_app: "
        "ModuleNotFoundError: No module named 'sqlalchemy'"
    ]


def test_a_different_function_list_fails(tmp_path: Path):
    expected = [*INDEXED, ["health", "health", ["GET"]]]
    report = check(package(tmp_path, {"function_app.py": FUNCTION_APP}), expected)
    assert report.problems == [
        "indexed functions differ: missing [['health', 'health', ['GET']]], unexpected []"
    ]


def git(root: Path, *arguments: str) -> None:
    subprocess.run(["git", *arguments], cwd=root, check=True, capture_output=True)


def test_app_files_are_the_tracked_ones_minus_funcignore(tmp_path: Path):
    """What git does not track never ships, even where .funcignore has no rule for it."""
    tracked = ["function_app.py", "api/db.py", "api/gone.py", "tests/test_x.py"]
    untracked = ["api/scratch.py", "node_modules/x/index.js", ".pgdata/PG_VERSION", "x.zip"]
    for name in [*tracked, *untracked, "coverage.xml", ".coverage.host.1"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    shutil.copy(".funcignore", tmp_path / ".funcignore")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".funcignore", *tracked)
    git(tmp_path, "add", "--force", "coverage.xml")  # tracked by mistake: .funcignore holds
    (tmp_path / "api/gone.py").unlink()  # deleted in the working tree, not yet in git
    listed = [path.as_posix() for path in app_files(tmp_path)]
    assert listed == ["api/db.py", "function_app.py"]


def test_the_funcignore_has_no_duplicate_rules():
    rules = [line for line in Path(".funcignore").read_text().splitlines() if line[:1] not in "#"]
    assert len(rules) == len(set(rules))
