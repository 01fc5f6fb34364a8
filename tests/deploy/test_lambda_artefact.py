"""`make lambda`'s zip: far under Lambda's limits, only the API and what it imports, the same
bytes from the same source, and a handler that imports and answers from the zip alone."""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from mediamill_core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MB = 1_000_000

pytestmark = pytest.mark.timeout(300)


def _load_builder() -> ModuleType:
    # Build tooling, not an installed package: loaded from its file, as `make lambda` runs it.
    spec = importlib.util.spec_from_file_location(
        "mediamill_lambda_build", ROOT / "deploy" / "ecs" / "lambda_build.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


builder = _load_builder()
HERE = f"{sys.version_info.major}.{sys.version_info.minor}"
SHIPPED = builder.RUNTIME.removeprefix("python")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The zip as `make lambda` builds it, for the function's runtime."""
    return builder.build(tmp_path_factory.mktemp("shipped") / "mediamill-api.zip")


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory, shipped: Any) -> tuple[Path, Path]:
    """The zip (or, when the runtime's Python is not this one, its twin built for this
    interpreter) unpacked as Lambda's /var/task, and a stand-in for the runtime's SDK."""
    base = tmp_path_factory.mktemp("lambda")
    artefact = shipped
    if shipped.python_version != HERE:
        artefact = builder.build(base / "twin.zip", python_version=HERE)
    task = base / "task"
    with zipfile.ZipFile(artefact.path) as archive:
        archive.extractall(task)
    # The Lambda runtime brings boto3 and its dependencies: here the test venv's copies, linked
    # into a directory of their own so that nothing else installed here can be found.
    return task, builder.runtime_sdk(base / "sdk")


def names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def test_the_zip_stays_far_under_lambdas_limits(shipped: Any) -> None:
    print(
        f"\n{shipped.path.name}: {shipped.zipped_bytes / MB:.2f} MB zipped, "
        f"{shipped.unzipped_bytes / MB:.2f} MB unzipped, {shipped.entries} files"
    )
    # Lambda: 50 MB zipped for a direct upload, 250 MB unzipped with layers.
    assert shipped.zipped_bytes < 10 * MB
    assert shipped.unzipped_bytes < 40 * MB
    assert shipped.zipped_bytes == shipped.path.stat().st_size


def test_the_zip_holds_the_api_and_what_it_imports_and_nothing_else(shipped: Any) -> None:
    packed = names(shipped.path)
    tops = {name.split("/", 1)[0].removesuffix(".py") for name in packed}
    for absent in ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six"):
        assert absent not in tops, f"{absent} is the runtime's, not ours to pack"
    for absent in ("worker", "stages", "tests", "bench", "plugins", "pyvips", "av", "numpy"):
        assert absent not in tops
    assert not [t for t in tops if t.startswith(("boto3-", "botocore-", "pyvips", "av-"))]
    assert {"api_lambda", "mediamill_core", "pydantic", "pydantic_core"} <= tops

    own = {
        path.relative_to(ROOT).as_posix()
        for package in ("api_lambda", "mediamill_core")
        for path in (ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert own <= set(packed)
    assert not [n for n in packed if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in packed if n.startswith("bin/") or "/tests/" in n]
    # Installer bookkeeping is left out; what says what each wheel is, and its licence, stays.
    assert not [n for n in packed if n.endswith(("/RECORD", "/INSTALLER", "/REQUESTED"))]
    assert any(n.startswith("pydantic-") and n.endswith(".dist-info/METADATA") for n in packed)
    assert any(".dist-info/licenses/" in n for n in packed)
    compiled = [n for n in packed if n.endswith(".so")]
    assert compiled, "pydantic_core's extension is missing"
    assert all(f"cpython-{SHIPPED.replace('.', '')}-x86_64-linux-gnu" in n for n in compiled)


@pytest.mark.parametrize(
    "stray",
    ["boto3/__init__.py", "botocore-1.40.61.dist-info/METADATA", "six.py", "worker/jobs.py"],
)
def test_a_zip_that_would_carry_the_sdk_or_the_worker_is_refused(stray: str) -> None:
    with pytest.raises(builder.BuildError, match=stray.split("/", 1)[0].removesuffix(".py")):
        builder._refuse_foreign(["api_lambda/handler.py", stray])


def test_every_entry_is_a_readable_file_with_a_fixed_time(shipped: Any) -> None:
    with zipfile.ZipFile(shipped.path) as archive:
        infos = archive.infolist()
    assert [info.filename for info in infos] == sorted(info.filename for info in infos)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {info.external_attr >> 16 for info in infos} == {0o100644}


def test_the_same_source_gives_the_same_bytes(shipped: Any, tmp_path: Path) -> None:
    again = builder.build(tmp_path / "again.zip")
    assert again.sha256 == shipped.sha256
    assert again.path.read_bytes() == shipped.path.read_bytes()


def test_a_twin_for_another_python_differs_only_in_its_compiled_wheels(
    shipped: Any, tmp_path: Path
) -> None:
    """What the handler test imports on this interpreter is what ships, but for the tags."""
    twin = builder.build(tmp_path / "twin.zip", python_version=HERE)
    shipped_tag = f"cpython-{SHIPPED.replace('.', '')}-"
    here_tag = f"cpython-{HERE.replace('.', '')}-"
    assert [n.replace(shipped_tag, here_tag) for n in names(shipped.path)] == names(twin.path)
    assert twin.distributions == shipped.distributions


# A fresh, isolated interpreter (no site-packages, no bytecode written, as on Lambda's read-only
# /var/task) that sees the unpacked zip, the standard library and the runtime's SDK only.
_INVOKE = """
import json, sys, time
task, sdk = sys.argv[1], sys.argv[2]
sys.path[:0] = [task]
sys.path.append(sdk)
started = time.perf_counter()
import api_lambda.handler
imported = time.perf_counter()
answers = [api_lambda.handler.handler(event, None) for event in json.load(sys.stdin)]
answered = time.perf_counter()
stdlib = (sys.base_prefix, sys.base_exec_prefix)
strays = sorted(
    name for name, module in list(sys.modules.items())
    if getattr(module, "__file__", None)
    and not module.__file__.startswith((task, sdk, *stdlib))
)
print(json.dumps({
    "answers": answers,
    "strays": strays,
    "path": sys.path,
    "import_seconds": imported - started,
    "first_answers_seconds": answered - imported,
}))
"""


def http_api_event(method: str, path: str, body: Any = None) -> dict[str, Any]:
    """An API Gateway HTTP API payload 2.0 event, as it arrives behind a JWT authorizer."""
    now = int(time.time())
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "accept": "application/json",
            "content-type": "application/json",
            "host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "user-agent": "curl/8.5.0",
            "x-amzn-trace-id": "Root=1-674cf0a0-0123456789abcdef01234567",
            "x-forwarded-for": "203.0.113.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "authorizer": {
                "jwt": {
                    # The authorizer passes claims on as strings, numbers included.
                    "claims": {
                        "aud": "mediamill",
                        "exp": str(now + 3600),
                        "iat": str(now),
                        "iss": "https://issuer.example.com/",
                        "sub": "carol",
                    },
                    "scopes": None,
                }
            },
            "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "a1b2c3d4e5",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "curl/8.5.0",
            },
            "requestId": "CfmKXhx-IAMEbNQ=",
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": now * 1000,
        },
        "isBase64Encoded": False,
    }
    if body is not None:
        event["body"] = json.dumps(body)
        event["headers"]["content-length"] = str(len(event["body"]))
    return event


def test_the_handler_imports_and_answers_from_the_zip_alone(
    unpacked: tuple[Path, Path],
    stack_env: dict[str, str],
    settings: Settings,
    dynamodb: Any,
) -> None:
    task, sdk = unpacked
    events = [
        http_api_event("GET", "/openapi.json"),
        http_api_event(
            "POST",
            "/uploads",
            {"filename": "beach.jpg", "content_type": "image/jpeg", "size": 4096},
        ),
    ]
    # Only the variables a Lambda gets: its settings and the AWS credentials (-I drops PYTHON*).
    env = {name: value for name, value in os.environ.items() if name.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", _INVOKE, str(task), str(sdk)],
        input=json.dumps(events),
        env={**env, **stack_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    assert report["strays"] == [], "imported from outside the zip, the SDK and the stdlib"
    assert not [p for p in report["path"] if "site-packages" in p]
    openapi, upload = report["answers"]
    assert openapi["statusCode"] == 200
    assert json.loads(openapi["body"])["openapi"].startswith("3.")
    assert upload["statusCode"] == 201, upload["body"]
    created = json.loads(upload["body"])
    assert created["upload"]["fields"]["key"] == f"originals/{created['media_id']}"
    item = dynamodb.get_item(TableName=settings.table, Key={"media_id": {"S": created["media_id"]}})
    assert item["Item"]["owner"] == {"S": "carol"}

    timings = builder.cold_import_seconds(task, sdk, runs=3)
    print(
        f"\ncold import of api_lambda.handler (Python {HERE}): median "
        f"{statistics.median(timings) * 1000:.0f} ms of {[round(t * 1000) for t in timings]} ms; "
        f"first two answers {report['first_answers_seconds'] * 1000:.0f} ms (clients built, moto)"
    )


class _CloudFormation(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, ...) read as plain values."""


def _construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    assert isinstance(node, yaml.MappingNode)
    return loader.construct_mapping(node, deep=True)


_CloudFormation.add_multi_constructor("!", lambda loader, _tag, node: _construct(loader, node))


def test_the_templates_api_function_runs_what_the_zip_is_built_for() -> None:
    template = yaml.load((ROOT / "deploy/ecs/template.yaml").read_text(), _CloudFormation)
    functions = {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
        and "ApiCodeBucket" in json.dumps(resource["Properties"].get("Code", {}))
    }
    for name, properties in functions.items():
        assert properties["Runtime"] == builder.RUNTIME, name
        assert properties.get("Architectures", [builder.ARCHITECTURE]) == [builder.ARCHITECTURE]
        assert properties["Handler"] == builder.HANDLER, name
