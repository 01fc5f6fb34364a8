"""Build the API Lambda's zip: ``api_lambda`` and ``mediamill_core`` from this tree, and the
manylinux wheels of what they import, less the AWS SDK that the Lambda runtime already carries.

``make lambda`` runs it. The same source, pins and zlib give the same bytes: entries are sorted,
timestamps and permissions fixed, and nothing that varies between machines is packed (no
bytecode, no console scripts, no installer records), so CI can compare hashes.

Kept out of the installed packages on purpose: it is build tooling, not part of mediamill.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import re
import statistics
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "dist" / "mediamill-api.zip"

# The function's runtime and architecture; the template's ApiFunction must say the same.
# python3.11 runs on Amazon Linux 2, whose Lambda runtime was deprecated on 2026-06-30 (no new
# functions from 2026-07-31): python3.12 is the nearest release Lambda still supports.
RUNTIME = "python3.12"
ARCHITECTURE = "x86_64"
PLATFORM = "manylinux2014_x86_64"  # glibc 2.17: loads on Amazon Linux 2023 and on 2
HANDLER = "api_lambda.handler.handler"
OWN_PACKAGES = ("api_lambda", "mediamill_core")

# What every Python runtime of Lambda carries: boto3 and the distributions it depends on (AWS's
# "Runtime-included SDK versions"). They are not packed; their import names follow.
# (six comes with python-dateutil.)
RUNTIME_PROVIDED = (
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "urllib3",
    "python-dateutil",
    "six",
)
RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six")

# Of a wheel's metadata, what says what it is and under which licence; the rest (RECORD,
# INSTALLER, REQUESTED) is pip's bookkeeping and names files that are not packed.
_KEPT_METADATA = {"METADATA", "WHEEL", "entry_points.txt", "top_level.txt"}
_KEPT_METADATA_DIRS = {"licenses", "sboms"}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: no build clock in the bytes
_FILE_MODE = 0o100644 << 16  # a regular file, world-readable, as Lambda requires


class BuildError(RuntimeError):
    """The zip could not be built as promised; the message says what went wrong."""


@dataclass(frozen=True, slots=True)
class Artefact:
    """A built zip and the figures the README and the tests quote."""

    path: Path
    python_version: str
    sha256: str
    zipped_bytes: int
    unzipped_bytes: int
    entries: int
    distributions: tuple[str, ...]  # "name==version", sorted


def requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The base install's dependencies (all the handler imports), less what the runtime has."""
    declared = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    provided = {_canonical(name) for name in RUNTIME_PROVIDED}
    return [spec for spec in declared if _canonical(_name(spec)) not in provided]


def build(
    out: Path = DEFAULT_OUT,
    *,
    python_version: str | None = None,
    root: Path = ROOT,
) -> Artefact:
    """Install the wheels for ``python_version`` (the runtime's by default) and pack the zip."""
    version = python_version or RUNTIME.removeprefix("python")
    with tempfile.TemporaryDirectory(prefix="mediamill-lambda-") as scratch:
        staging = Path(scratch) / "staging"
        _install(requirements(root / "pyproject.toml"), staging, version, root / "constraints.txt")
        files = {**_third_party(staging), **_own_code(root)}
        _refuse_foreign(files)
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_zip(files, out)
        distributions = tuple(sorted(_distributions(staging)))
    data = out.read_bytes()
    with zipfile.ZipFile(out) as archive:
        members = archive.infolist()
    return Artefact(
        path=out,
        python_version=version,
        sha256=hashlib.sha256(data).hexdigest(),
        zipped_bytes=len(data),
        unzipped_bytes=sum(member.file_size for member in members),
        entries=len(members),
        distributions=distributions,
    )


def runtime_sdk(into: Path) -> Path:
    """A stand-in for the runtime's own SDK directory: this interpreter's boto3 and its
    dependencies, linked into ``into`` and nothing else beside them."""
    into.mkdir(parents=True, exist_ok=True)
    for module in RUNTIME_MODULES:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise BuildError(f"{module} is not installed here: no stand-in for the runtime's SDK")
        source = Path(spec.origin)
        source = source.parent if source.name == "__init__.py" else source
        (into / source.name).symlink_to(source, target_is_directory=source.is_dir())
    return into


_IMPORT_TIMER = """
import sys, time
sys.path[:0] = [{task!r}]
sys.path.append({sdk!r})
started = time.perf_counter()
import api_lambda.handler
print(time.perf_counter() - started)
"""


def cold_import_seconds(task: Path, sdk: Path, *, runs: int = 5) -> list[float]:
    """Time ``import api_lambda.handler`` in ``runs`` fresh interpreters that see only ``task``
    (the unpacked zip), the standard library and ``sdk``: isolated (-I), no site-packages (-S),
    no bytecode written (-B), as on Lambda, whose code directory is read-only."""
    timings = []
    script = _IMPORT_TIMER.format(task=str(task), sdk=str(sdk))
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-B", "-c", script],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if done.returncode != 0:
            raise BuildError(f"the handler does not import from {task}:\n{done.stderr}")
        timings.append(float(done.stdout))
    return timings


def measure(artefact: Artefact, *, runs: int = 5) -> tuple[Artefact, list[float]]:
    """Cold import timings of the artefact; when it targets another Python than this one, of a
    twin built for this interpreter (same pins and packing, only the compiled wheels differ)."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    with tempfile.TemporaryDirectory(prefix="mediamill-lambda-run-") as scratch:
        base = Path(scratch)
        timed = artefact
        if artefact.python_version != here:
            timed = build(base / "twin.zip", python_version=here)
        task = base / "task"
        with zipfile.ZipFile(timed.path) as archive:
            archive.extractall(task)
        return timed, cold_import_seconds(task, runtime_sdk(base / "sdk"), runs=runs)


def _install(specs: Sequence[str], staging: Path, version: str, constraints: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--platform",
        PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        version,
        "--only-binary=:all:",
        "--target",
        str(staging),
        "--constraint",
        str(constraints),
        *specs,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"pip could not install the API's wheels:\n{done.stderr}")


def _third_party(staging: Path) -> dict[str, Path]:
    files = {}
    for path in staging.rglob("*"):
        relative = path.relative_to(staging)
        if path.is_file() and _packed(relative):
            files[relative.as_posix()] = path
    return files


def _packed(relative: Path) -> bool:
    parts = relative.parts
    if parts[0] == "bin" or "__pycache__" in parts or relative.suffix == ".pyc":
        return False  # console scripts carry the build machine's interpreter path
    if any(part in ("tests", "test") for part in parts[1:-1]):
        return False
    if parts[0].endswith(".dist-info"):
        return (len(parts) == 2 and parts[1] in _KEPT_METADATA) or (
            len(parts) > 2 and parts[1] in _KEPT_METADATA_DIRS
        )
    return True


def _own_code(root: Path) -> dict[str, Path]:
    files = {}
    for package in OWN_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            relative = path.relative_to(root)
            wanted = path.suffix == ".py" or path.name == "py.typed"
            if wanted and path.is_file() and "__pycache__" not in relative.parts:
                files[relative.as_posix()] = path
    if "api_lambda/handler.py" not in files:
        raise BuildError(f"no api_lambda/handler.py under {root}")
    return files


def _refuse_foreign(files: Iterable[str]) -> None:
    """The runtime's SDK, the worker, the stages and media libraries have no place here."""
    foreign = {*RUNTIME_MODULES, "worker", "stages", "pyvips", "av", "numpy", "PIL", "aiohttp"}
    provided = {_canonical(name) for name in RUNTIME_PROVIDED}
    found = set()
    for name in files:
        top = name.split("/", 1)[0]
        module = top.removesuffix(".py")
        if module in foreign or (top.endswith(".dist-info") and _dist_name(top) in provided):
            found.add(top)
    if found:
        raise BuildError(f"the zip would carry what the API must not: {', '.join(sorted(found))}")


def _write_zip(files: dict[str, Path], out: Path) -> None:
    with zipfile.ZipFile(out, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = _FILE_MODE
            info.create_system = 3  # Unix, so the mode bits above are read
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name].read_bytes(), compresslevel=9)


def _distributions(staging: Path) -> Iterable[str]:
    for metadata in staging.glob("*.dist-info/METADATA"):
        fields = dict(
            line.split(": ", 1) for line in metadata.read_text().splitlines() if ": " in line
        )
        yield f"{fields['Name']}=={fields['Version']}"


def _name(spec: str) -> str:
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec.strip())
    if found is None:
        raise BuildError(f"cannot read a distribution name from {spec!r}")
    return found.group(0)


def _dist_name(folder: str) -> str:
    # "python_dateutil-2.9.0.post0.dist-info" -> "python-dateutil"
    return _canonical(folder.removesuffix(".dist-info").rsplit("-", 1)[0])


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the zip")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--no-import-check", action="store_true", help="skip timing the handler's cold import"
    )
    args = parser.parse_args(argv)
    try:
        artefact = build(args.out)
        timed, timings = (artefact, []) if args.no_import_check else measure(artefact)
    except BuildError as exc:
        print(f"make lambda: {exc}", file=sys.stderr)
        return 1
    if args.json:
        figures = {
            "path": str(artefact.path),
            "runtime": RUNTIME,
            "architecture": ARCHITECTURE,
            "sha256": artefact.sha256,
            "zipped_bytes": artefact.zipped_bytes,
            "unzipped_bytes": artefact.unzipped_bytes,
            "entries": artefact.entries,
            "distributions": list(artefact.distributions),
            "cold_import_seconds": timings,
            "cold_import_python": timed.python_version,
        }
        print(json.dumps(figures, indent=2))
        return 0
    print(f"{artefact.path}: {RUNTIME} on {ARCHITECTURE}, handler {HANDLER}")
    print(
        f"  {_megabytes(artefact.zipped_bytes)} zipped, {_megabytes(artefact.unzipped_bytes)} "
        f"unzipped, {artefact.entries} files (Lambda allows 50 MB zipped, 250 MB unzipped)"
    )
    print(f"  sha256 {artefact.sha256}")
    print(f"  packed: {', '.join(artefact.distributions)}")
    print(f"  left to the runtime: {', '.join(RUNTIME_PROVIDED)}")
    if timings:
        twin = "" if timed is artefact else f" (a twin built for Python {timed.python_version})"
        print(
            f"  cold import of {HANDLER.rsplit('.', 1)[0]}{twin}: median "
            f"{statistics.median(timings) * 1000:.0f} ms over {len(timings)} fresh interpreters"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
