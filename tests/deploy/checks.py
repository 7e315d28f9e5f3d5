"""What no schema sees: the deployment files must agree with each other and with the code
(selectors and pods, ports and probes, the queue KEDA watches and the one Celery fills, the
metric names a dashboard plots and the ones the processes export, the settings the files set
and the ones sealscribe reads), and hold no secret. Each function returns the problems it
found, so a test can show it finds them in a broken copy."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
IMAGE_UID = 10001
SECRET_WORDS = re.compile(r"PASSWORD|TOKEN|SECRET|ROLE_ID|_KEY$", re.IGNORECASE)

Doc = dict[str, Any]


def k8s_files() -> list[Path]:
    return sorted(K8S.rglob("*.yaml"))


def load_all(paths: Iterable[Path]) -> list[Doc]:
    docs: list[Doc] = []
    for path in paths:
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _named(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _cpu(value: str) -> float:
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def known_settings() -> set[str]:
    """Every SEALSCRIBE_* name the code reads or documents."""
    names: set[str] = set()
    for folder in ("keys", "pipeline", "workers"):
        for source in (ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r"SEALSCRIBE_[A-Z0-9_]+", source.read_text()))
    names |= {n.rstrip("_") for n in names}
    # TransitConfig reads SEALSCRIBE_TRANSIT_ + a suffix
    transit = (ROOT / "keys" / "transit.py").read_text()
    names |= {f"SEALSCRIBE_TRANSIT_{s}" for s in re.findall(r'get\("([A-Z_]+)"\)', transit)}
    return names


def k8s_problems(docs: list[Doc]) -> list[str]:
    problems: list[str] = []
    deployments = _named(docs, "Deployment")
    configmaps = _named(docs, "ConfigMap")
    secrets = _named(docs, "Secret")
    settings = known_settings()
    for name, dep in deployments.items():
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"]["labels"]
        if not _matches(spec["selector"]["matchLabels"], labels):
            problems.append(f"{name}: selector does not match its pod labels")
        sec = pod.get("securityContext", {})
        if sec.get("runAsNonRoot") is not True or sec.get("runAsUser") != IMAGE_UID:
            problems.append(f"{name}: pod must run as non-root uid {IMAGE_UID}")
        if sec.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: seccomp profile must be RuntimeDefault")
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: needs no service account token")
        mounts_needed = {"/var/lib/sealscribe", "/tmp"}
        for c in pod["containers"]:
            where = f"{name}/{c['name']}"
            csec = c.get("securityContext", {})
            if csec.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root filesystem must be read-only")
            if csec.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: privilege escalation must be off")
            if csec.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{where}: must drop ALL capabilities")
            requests = c.get("resources", {}).get("requests", {})
            if not {"cpu", "memory"} <= set(requests):
                problems.append(f"{where}: needs cpu and memory requests")
            if not mounts_needed <= {m["mountPath"] for m in c.get("volumeMounts", [])}:
                problems.append(f"{where}: SEALSCRIBE_HOME and /tmp must be writable mounts")
            ports = {p.get("name") for p in c.get("ports", [])} | {
                p["containerPort"] for p in c.get("ports", [])
            }
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                target = c.get(probe, {}).get("httpGet", {}).get("port")
                if target is not None and target not in ports:
                    problems.append(f"{where}: {probe} port {target} is not a container port")
            args = c.get("args", [])
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref and ref["configMapRef"]["name"] not in configmaps:
                    problems.append(f"{where}: no ConfigMap {ref['configMapRef']['name']}")
                if "secretRef" in ref and ref["secretRef"]["name"] not in secrets:
                    problems.append(f"{where}: no Secret {ref['secretRef']['name']}")
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            for var in env:
                if var.startswith("SEALSCRIBE_") and var not in settings:
                    problems.append(f"{where}: sealscribe reads no {var}")
            if args[:1] == ["worker"]:
                if args[args.index("--concurrency") + 1 :][:1] != ["1"]:
                    problems.append(f"{where}: one worker process per pod (--concurrency 1)")
                threads = env.get("SEALSCRIBE_CPU_THREADS")
                if threads is None or int(threads) != round(_cpu(requests.get("cpu", "0"))):
                    problems.append(
                        f"{where}: SEALSCRIBE_CPU_THREADS must equal the cpu "
                        "request (os.cpu_count() in a pod is the node's)"
                    )
    beats = [
        n
        for n, d in deployments.items()
        if "--beat" in d["spec"]["template"]["spec"]["containers"][0].get("args", [])
    ]
    if len(beats) != 1:
        problems.append(f"exactly one Deployment must run beat, found {beats}")
    for n in beats:
        spec = deployments[n]["spec"]
        if spec.get("replicas") != 1 or spec.get("strategy", {}).get("type") != "Recreate":
            problems.append(f"{n}: beat needs replicas 1 and the Recreate strategy")
    api = deployments.get("sealscribe-api")
    if api is None:
        problems.append("no sealscribe-api Deployment")
    else:
        c = api["spec"]["template"]["spec"]["containers"][0]
        for probe in ("livenessProbe", "readinessProbe"):
            if c.get(probe, {}).get("httpGet", {}).get("path") != "/healthz":
                problems.append(f"sealscribe-api: {probe} must be /healthz")
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]
    for name, svc in _named(docs, "Service").items():
        if not any(_matches(svc["spec"]["selector"], labels) for labels in pod_labels):
            problems.append(f"Service {name} selects no pod")
    for name, pdb in _named(docs, "PodDisruptionBudget").items():
        selected = [
            n
            for n, d in deployments.items()
            if _matches(
                pdb["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]
            )
        ]
        if selected != ["sealscribe-worker"]:
            problems.append(f"PodDisruptionBudget {name} must select the workers, got {selected}")
    for kind in ("ConfigMap", "Secret"):
        for name, doc in _named(docs, kind).items():
            data = doc.get("data", {}) | doc.get("stringData", {})
            for key, value in data.items():
                if key.startswith("SEALSCRIBE_") and key not in settings:
                    problems.append(f"{kind} {name}: sealscribe reads no {key}")
                if kind == "ConfigMap" and SECRET_WORDS.search(key):
                    problems.append(f"ConfigMap {name}: {key} belongs in a Secret")
                if kind == "Secret" and value != "CHANGE-ME" and "CHANGE-ME" not in value:
                    problems.append(f"Secret {name}: {key} holds a value, not a placeholder")
    problems += _autoscaling_problems(docs, deployments, secrets)
    problems += _egress_problems(docs, deployments)
    return problems


#: addresses no pod may reach through an ipBlock: loopback, the cloud metadata service,
#: private and CGNAT ranges (the cluster's own), IPv6 ULA and link-local
NON_PUBLIC_SAMPLES = (
    "127.0.0.1",
    "169.254.169.254",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.0.1",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.251",
    "::1",
    "fd00::1",
    "fe80::1",
    "64:ff9b::a9fe:a9fe",
)


def _selects(policy: Doc, labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    if not _matches(selector.get("matchLabels", {}), labels):
        return False
    for expr in selector.get("matchExpressions", []):
        if expr["operator"] != "In" or labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def _ip_blocks_reach(rules: list[Doc], address: str) -> bool:
    ip = ipaddress.ip_address(address)
    for rule in rules:
        for peer in rule.get("to", []):
            block = peer.get("ipBlock")
            if block is None:
                continue
            cidr = ipaddress.ip_network(block["cidr"])
            if ip.version == cidr.version and ip in cidr:
                excepted = [ipaddress.ip_network(e) for e in block.get("except", [])]
                if not any(ip.version == e.version and ip in e for e in excepted):
                    return True
    return False


def _egress_problems(docs: list[Doc], deployments: dict[str, Doc]) -> list[str]:
    """Every pod's egress is fenced by a NetworkPolicy: DNS allowed, no ipBlock that reaches
    a non-public address, and public addresses for the bots and the API only."""
    problems: list[str] = []
    policies = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy" and "Egress" in d["spec"].get("policyTypes", [])
    ]
    for name, dep in deployments.items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in policies if _selects(p, labels)]
        if not mine:
            problems.append(f"no NetworkPolicy limits the egress of {name}")
            continue
        rules = [r for p in mine for r in p["spec"].get("egress", [])]
        if not any({"protocol": "UDP", "port": 53} in r.get("ports", []) for r in rules):
            problems.append(f"{name}: its NetworkPolicy must allow DNS (UDP 53)")
        for address in NON_PUBLIC_SAMPLES:
            if _ip_blocks_reach(rules, address):
                problems.append(f"{name}: its NetworkPolicy lets it reach {address}")
        public = _ip_blocks_reach(rules, "8.8.8.8")
        needs_public = labels.get("app.kubernetes.io/component") in ("bots", "api")
        if public != needs_public:
            problems.append(
                f"{name}: public addresses must be reachable only by the bots and the API"
            )
    return problems


def _autoscaling_problems(
    docs: list[Doc], deployments: dict[str, Doc], secrets: dict[str, Doc]
) -> list[str]:
    from pipeline.store.schema import CELERY_QUEUE

    problems: list[str] = []
    auths = _named(docs, "TriggerAuthentication")
    for name, so in _named(docs, "ScaledObject").items():
        spec = so["spec"]
        if spec["scaleTargetRef"]["name"] != "sealscribe-worker":
            problems.append(f"ScaledObject {name} must scale sealscribe-worker")
        if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
            problems.append(f"ScaledObject {name}: minReplicaCount above maxReplicaCount")
        for trigger in spec["triggers"]:
            queue = {"redis": "listName", "rabbitmq": "queueName"}.get(trigger["type"])
            if queue is not None and trigger["metadata"].get(queue) != CELERY_QUEUE:
                problems.append(f"ScaledObject {name}: the Celery queue is {CELERY_QUEUE!r}")
            ref = trigger.get("authenticationRef", {}).get("name")
            if ref is not None and ref not in auths:
                problems.append(f"ScaledObject {name}: no TriggerAuthentication {ref}")
    for name, auth in auths.items():
        for ref in auth["spec"].get("secretTargetRef", []):
            secret = secrets.get(ref["name"])
            if secret is None or ref["key"] not in secret.get("stringData", {}) | secret.get(
                "data", {}
            ):
                problems.append(
                    f"TriggerAuthentication {name}: no key {ref['key']} in Secret {ref['name']}"
                )
    for name, hpa in _named(docs, "HorizontalPodAutoscaler").items():
        if hpa["spec"]["scaleTargetRef"]["name"] not in deployments:
            problems.append(f"HorizontalPodAutoscaler {name} scales no Deployment here")
    return problems


def compose_problems(compose: Doc, env_example: str) -> list[str]:
    problems: list[str] = []
    services: dict[str, Doc] = compose["services"]
    settings = known_settings()
    ours = {n: s for n, s in services.items() if s.get("image", "").startswith("sealscribe:")}
    if set(ours) != {"api", "worker", "beat", "bots"}:
        problems.append(f"sealscribe services are {sorted(ours)}")
    for name, svc in ours.items():
        if svc.get("read_only") is not True:
            problems.append(f"{name}: root filesystem must be read-only")
        if svc.get("cap_drop") != ["ALL"]:
            problems.append(f"{name}: must drop ALL capabilities")
        if "healthcheck" not in svc:
            problems.append(f"{name}: needs a healthcheck")
        for var in svc.get("environment", {}):
            if SECRET_WORDS.search(var):
                problems.append(f"{name}: {var} belongs in the env file, not compose.yaml")
    beats = [n for n, s in ours.items() if "--beat" in s.get("command", [])]
    if beats != ["beat"] or services["beat"].get("deploy", {}).get("replicas") != 1:
        problems.append(f"exactly one beat worker (replicas 1), found {beats}")
    worker = services.get("worker", {})
    if "replicas" not in worker.get("deploy", {}):
        problems.append("worker: deploy.replicas sets how many workers run")
    redis_cmd = " ".join(map(str, services.get("redis", {}).get("command", [])))
    for flag in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        if flag not in redis_cmd:
            problems.append(f"redis: a job queue needs {flag}")
    for line in env_example.splitlines():
        key = line.split("=", 1)[0].strip()
        if key.startswith("SEALSCRIBE_") and key not in settings:
            problems.append(f"env example: sealscribe reads no {key}")
    return problems


def exported_metrics() -> set[str]:
    """Names of every metric the API, the bots and the workers export."""
    from prometheus_client import REGISTRY

    import pipeline.metrics
    import workers.metrics

    assert pipeline.metrics and workers.metrics  # imported for their registrations
    names = {m.name for m in REGISTRY.collect()}
    depth = pipeline.metrics.QueueCollector(lambda: (0, 0))
    names |= {m.name for m in depth.collect()}
    webhook_age = pipeline.metrics.WebhookQueueCollector(lambda: 0.0)
    names |= {m.name for m in webhook_age.collect()}
    return names


def dashboard_problems(dashboard: Doc, exported: set[str]) -> list[str]:
    problems: list[str] = []
    ids = [p["id"] for p in dashboard["panels"]]
    if len(ids) != len(set(ids)):
        problems.append("panel ids repeat")
    variables = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        if grid["x"] + grid["w"] > 24:
            problems.append(f"{panel['title']}: wider than the dashboard")
        uid = panel.get("datasource", {}).get("uid", "")
        if uid.startswith("${") and uid[2:-1] not in variables:
            problems.append(f"{panel['title']}: no variable {uid}")
        for target in panel["targets"]:
            for name in re.findall(r"sealscribe_[a-z_]+", target["expr"]):
                base = re.sub(r"_(bucket|sum|count|total|created)$", "", name)
                if base not in exported:
                    problems.append(f"{panel['title']}: no metric {name}")
    return problems
