"""deploy/ecs/Dockerfile and .dockerignore give the image the service needs (beyond hadolint)."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from mediamill_core.settings import ENV_PREFIX, Settings
from worker.cli import parser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "ecs" / "Dockerfile"
DIGEST = re.compile(r"^python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    args: str
    stage: int  # -1 before the first FROM

    def exec_form(self) -> list[str] | None:
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list)
        return [str(part) for part in value]

    def flags(self) -> dict[str, str]:
        found = {}
        for word in shlex.split(self.args):
            if not word.startswith("--"):
                break
            name, _, value = word[2:].partition("=")
            found[name] = value
        return found


def parse(text: str) -> list[Instruction]:
    """Instructions with continuations joined and comments dropped (the Dockerfile grammar)."""
    instructions: list[Instruction] = []
    stage, pending = -1, ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may also sit between continued lines
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, args = pending.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), stage))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.args):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def runtime(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def test_the_parser_joins_continuations_and_skips_comments() -> None:
    parsed = parse("ARG A=1\nFROM x AS b\n# note\nRUN one \\\n  # inside\n  && two\nUSER 1:1\n")
    assert [(i.keyword, i.args, i.stage) for i in parsed] == [
        ("ARG", "A=1", -1),
        ("FROM", "x AS b", 0),
        ("RUN", "one && two", 0),
        ("USER", "1:1", 0),
    ]


def test_the_base_is_a_build_argument_pinned_by_digest(instructions: list[Instruction]) -> None:
    before = [i for i in instructions if i.stage == -1 and i.keyword == "ARG"]
    defaults = dict(i.args.partition("=")[::2] for i in before)
    assert DIGEST.match(defaults.get("BASE_IMAGE", "")), defaults


def test_builder_and_runtime_share_the_base(instructions: list[Instruction]) -> None:
    froms = [i.args.split() for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: a builder and a runtime"
    assert {words[0] for words in froms} == {"${BASE_IMAGE}"}
    assert [words[1:] for words in froms] == [["AS", "builder"], ["AS", "runtime"]]


def test_the_runtime_takes_only_the_virtualenv_from_the_builder(
    runtime: list[Instruction],
) -> None:
    copies = [i for i in runtime if i.keyword in ("COPY", "ADD")]
    assert [(i.keyword, i.args) for i in copies] == [
        ("COPY", "--from=builder /opt/mediamill /opt/mediamill")
    ]
    # Nothing installed from a network or a package manager where the service runs.
    runs = " ".join(i.args for i in runtime if i.keyword == "RUN")
    assert not re.search(r"\b(pip|apt-get|apt|curl|wget)\b", runs), runs


def test_only_wheels_are_installed_and_no_system_media_libraries(
    instructions: list[Instruction],
) -> None:
    runs = [i.args for i in instructions if i.keyword == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert installs, "the worker is pip-installed in the builder"
    for run in installs:
        for flag in ("--no-index", "--only-binary=:all:", "-c constraints.txt"):
            assert flag in run, run
    assert any('"mediamill[worker]"' in run for run in installs)
    downloads = [r for r in runs if "pip wheel" in r and "-r requirements.txt" in r]
    assert len(downloads) == 1
    assert "--only-binary=:all:" in downloads[0]
    assert "-c constraints.txt" in downloads[0]
    # pyvips 3 is an sdist only; its wheel must come out pure Python (nothing compiled).
    assert "--no-binary=pyvips" in downloads[0]
    assert "pyvips-*-py3-none-any.whl" in downloads[0]
    for run in runs:
        assert not re.search(r"apt-get|apk |libvips|ffmpeg", run), run


def test_the_wheels_cover_the_product_packages(instructions: list[Instruction]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = sorted(pattern.rstrip("*") for pattern in includes)
    copied = sorted(
        i.args.split()[0]
        for i in instructions
        if i.keyword == "COPY" and not i.args.startswith("--") and i.args.split()[0] in packages
    )
    assert copied == packages
    # The dependency layer reads the worker extra, which must stay free of self-references.
    assert not any(
        "mediamill" in dep for dep in project["project"]["optional-dependencies"]["worker"]
    )


def test_the_runtime_runs_as_a_fixed_non_root_user(runtime: list[Instruction]) -> None:
    users = [i.args for i in runtime if i.keyword == "USER"]
    assert users, "the runtime sets its user"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), users
    assert gid.isdigit(), users
    assert min(int(uid), int(gid)) >= 1000, users
    setup = " ".join(i.args for i in runtime if i.keyword == "RUN")
    assert f"useradd --uid {uid} --gid {gid}" in setup
    assert f"groupadd --gid {gid}" in setup


def test_the_runtime_environment(runtime: list[Instruction]) -> None:
    env = env_of(runtime)
    assert env["VIPS_BLOCK_UNTRUSTED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/mediamill/bin:")
    # Every MEDIAMILL_* variable set here is a real setting.
    settings = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    ours = {name for name in env if name.startswith(ENV_PREFIX)}
    assert ours
    assert ours <= settings, ours - settings
    # The spool belongs to the user the worker runs as.
    uid, _, gid = next(i.args for i in runtime if i.keyword == "USER").partition(":")
    setup = " ".join(i.args for i in runtime if i.keyword == "RUN")
    assert f"install -d -o {uid} -g {gid} -m 0700 {env['MEDIAMILL_SPOOL_DIR']}" in setup


def test_the_entrypoint_is_mediamill_worker_in_exec_form(runtime: list[Instruction]) -> None:
    entrypoints = [i for i in runtime if i.keyword == "ENTRYPOINT"]
    assert len(entrypoints) == 1
    command = entrypoints[0].exec_form()
    assert command == ["mediamill", "worker"]
    # No default arguments, and the inherited `python3` CMD of the base is cleared.
    assert [i.exec_form() for i in runtime if i.keyword == "CMD"] == [[]]
    # The console script and its subcommand exist.
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["mediamill"] == "worker.cli:main"
    assert parser().parse_args(command[1:]).command == "worker"


def test_the_healthcheck_runs_mediamill_health(runtime: list[Instruction]) -> None:
    checks = [i for i in runtime if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    flags = checks[0].flags()
    command = checks[0].args.split(" CMD ", 1)[1]
    assert json.loads(command) == ["mediamill", "health"]
    assert parser().parse_args(["health"]).command == "health"
    assert set(flags) == {"interval", "timeout", "start-period", "retries"}

    def seconds(value: str) -> int:
        assert value.endswith("s"), value
        return int(value[:-1])

    # mediamill health waits 2 s for /healthz by default: well inside the check's timeout, which
    # stays at or under ECS's own 5 s default.
    default_wait = parser().parse_args(["health"]).timeout
    assert default_wait < seconds(flags["timeout"]) <= 5
    assert seconds(flags["start-period"]) >= 30  # start-up: settings, AWS clients, queue
    assert seconds(flags["interval"]) >= seconds(flags["timeout"])


def test_the_exposed_port_is_the_metrics_port(runtime: list[Instruction]) -> None:
    exposed = [i.args for i in runtime if i.keyword == "EXPOSE"]
    assert exposed == [str(Settings.model_fields["metrics_port"].default)]


def test_the_image_is_labelled_with_version_and_source(runtime: list[Instruction]) -> None:
    labels = " ".join(i.args for i in runtime if i.keyword == "LABEL")
    for key in ("version", "source", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key


# --- the build context --------------------------------------------------------------------


def _matches(pattern: str, path: str) -> bool:
    """Docker's .dockerignore match: the path or one of its parents matches the pattern."""
    regex = ""
    for part in re.split(r"(\*\*/?|\*|\?)", pattern.strip("/")):
        if part in ("**", "**/"):
            regex += "(.*/)?" if part == "**/" else ".*"
        elif part == "*":
            regex += "[^/]*"
        elif part == "?":
            regex += "[^/]"
        else:
            regex += re.escape(part)
    parts = path.split("/")
    return any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1))


def ignored(path: str) -> bool:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    verdict = False
    for rule in rules:
        keep = rule.startswith("!")
        if _matches(rule.removeprefix("!"), path):
            verdict = not keep
    return verdict


def test_the_matcher_follows_docker_semantics() -> None:
    assert _matches("*", ".venv/bin/python")
    assert _matches("**/__pycache__", "a/b/__pycache__/x")
    assert _matches("worker/", "worker/cli.py")
    assert not _matches("worker", "workers/x")
    assert _matches("**/*.pyc", "top.pyc")
    assert not _matches("*.pyc", "a/b.pyc")


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "demo-output/photo.jpg",
        "bench/results.json",
        "plugins/checksum/pyproject.toml",
        ".pytest_cache/v",
        ".mypy_cache/3.11/x.json",
        "worker/__pycache__/cli.cpython-311.pyc",
        "mediamill_core.egg-info/PKG-INFO",
        "build/lib/worker/cli.py",
        "deploy/ecs/template.yaml",
    ],
)
def test_the_context_leaves_out(path: str) -> None:
    assert ignored(path)


def test_the_context_holds_everything_the_dockerfile_copies(
    instructions: list[Instruction],
) -> None:
    sources = [
        word
        for i in instructions
        if i.keyword == "COPY" and not i.args.startswith("--from")
        for word in i.args.split()[:-1]
    ]
    assert "pyproject.toml" in sources
    assert "worker" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source), source
        inside = next((ROOT / source).rglob("*.py"), None) if (ROOT / source).is_dir() else None
        if inside is not None:
            assert not ignored(str(inside.relative_to(ROOT))), inside
