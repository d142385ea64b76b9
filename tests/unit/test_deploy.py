"""deploy/ checked offline: the Dockerfile lints clean and runs `tollgate serve` as the contract
says; the Kubernetes manifests render with kustomize, validate against Kubernetes' schemas, and
agree with the image and the configuration they carry (ports, probes, drain, non-root)."""

from __future__ import annotations

import http.server
import importlib.util
import itertools
import json
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from tests.support.deploy import (
    ADMIN_KEYS_EXAMPLE,
    CA_FILES,
    CONSOLE_EXAMPLE,
    DEPLOY,
    DOCKERFILE,
    INSTALL,
    KUBERNETES,
    MIGRATE_EXAMPLE,
    RECORDS_EXAMPLE,
    ROLES_SQL,
    ROOT,
    env_file,
    example_copy,
    find,
    instructions,
    kustomize,
    tool,
)
from tests.support.dockerignore import context_files, excluded, rules
from tests.support.proxy import free_port

from tollgate.configuration.config import load_config, parse_config
from tollgate.governance.policy.policy import CALL_DECISION, Policy, whole

# drain_s's default (docs/fleet.md): how long a pod's calls may take to finish after SIGTERM.
DRAIN_S_DEFAULT = 30
# Kubernetes releases validated against: the oldest still common, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.29", "latest")


# --- the image ----------------------------------------------------------------------------------


def test_the_dockerfile_lints_clean(tmp_path: Path) -> None:
    # Every rule, at every level down to style, and no rule switched off inside the file; no
    # configuration file of the machine's (hadolint reads one from the directory and HOME).
    done = subprocess.run(
        [tool("hadolint"), "--no-color", "--failure-threshold", "style", "--disable-ignore-pragma", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def image_command() -> list[str]:
    (entrypoint,) = instructions("ENTRYPOINT")
    (cmd,) = instructions("CMD")
    return entrypoint.exec_form() + cmd.exec_form()


def option(command: list[str], name: str) -> str:
    """The value of mitmdump's `--name VALUE` or `--set name=VALUE` in a command."""
    for flag, value in itertools.pairwise(command):
        if flag == f"--{name.replace('_', '-')}":
            return value
        if flag == "--set" and value.startswith(f"{name}="):
            return value.split("=", 1)[1]
    raise AssertionError(f"{name} not in {command}")


def test_the_image_runs_tollgate_serve_as_a_user_of_its_own_on_a_slim_python() -> None:
    (base,) = instructions("FROM")
    found = re.fullmatch(r"python:3\.(\d+)-slim(-\w+)?", base.arguments)
    assert found is not None and int(found.group(1)) >= 12, base
    (user,) = instructions("USER")
    uid, _, gid = user.arguments.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid != "0", user  # numeric: runAsNonRoot can check it
    command = image_command()
    assert command[:2] == ["tollgate", "serve"] and "--workers" not in command  # TOLLGATE_WORKERS, else 1
    assert (option(command, "listen_host"), option(command, "listen_port")) == ("0.0.0.0", "8080")
    assert option(command, "confdir") == "/etc/tollgate/ca"
    assert option(command, "tollgate_config") == "/etc/tollgate/config/tollgate.yaml"
    assert [i.arguments for i in instructions("STOPSIGNAL")] == ["SIGTERM"]
    assert instructions("EXPOSE")[0].arguments.split() == ["8080", "9464"]
    (check,) = instructions("HEALTHCHECK")
    assert check.arguments.endswith('CMD ["python", "/opt/tollgate/src/deploy/healthcheck.py"]'), check


def test_the_image_is_installed_by_the_script_its_test_runs() -> None:
    steps = [(i.keyword, i.arguments) for i in instructions("COPY") + instructions("RUN")]
    assert ("COPY", ". /opt/tollgate/src") in steps
    assert ("RUN", "/opt/tollgate/src/deploy/install.sh /opt/tollgate/venv") in steps
    # The context as Docker reads .dockerignore (its documentation's examples, read as it says)...
    documented = rules("*/temp*\n*/*/temp*\ntemp?\n**/*.go\n")
    assert excluded("somedir/temporary.txt", documented) and excluded("somedir/subdir/temporary.txt", documented)
    assert excluded("tempa", documented) and excluded("a/b/c/x.go", documented) and excluded("x.go", documented)
    assert not excluded("temporary.txt", documented) and not excluded("tempab", documented)
    readme = rules("*.md\n!README*.md\nREADME-secret.md\n")
    assert not excluded("README.md", readme) and not excluded("README-public.md", readme)
    assert excluded("README-secret.md", readme) and excluded("notes.md", readme)
    # A directory's exclusion is its files', and a later exception takes one back.
    nested = rules("*\n!deploy/install.sh\n/ignored/**\n")
    assert excluded("deploy/Dockerfile", nested) and not excluded("deploy/install.sh", nested)
    # ... holds what that script installs and the image runs, and nothing else.
    files = context_files(ROOT, ROOT / ".dockerignore")
    assert {
        "pyproject.toml",
        "requirements/run.lock",
        "README.md",
        "addons/gateway.py",
        "addons/tollgate/cli/main.py",
    } <= set(files)
    assert {"deploy/install.sh", "deploy/install-opa.sh", "deploy/healthcheck.py"} <= set(files)
    outside = {f for f in files if not f.startswith("addons/tollgate/")} - {
        "pyproject.toml",
        "requirements/run.lock",
        "README.md",
        "addons/gateway.py",
        "deploy/install.sh",
        "deploy/install-opa.sh",
        "deploy/healthcheck.py",
    }
    assert outside == set()
    assert not [f for f in files if "__pycache__" in f or ".egg-info" in f]


HEALTHCHECK = DEPLOY / "healthcheck.py"


@pytest.fixture
def healthz() -> Iterator[tuple[str, list[tuple[int, bytes]]]]:
    """A /healthz that answers what the test puts first in its list (status, body)."""
    answers: list[tuple[int, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers[0] if self.path == "/healthz" else (404, b"no such page")
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/healthz", answers
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def health_check(url: str) -> subprocess.CompletedProcess[str]:
    # A proxy in the environment (nothing listens there) must not be used for the check.
    env = {"TOLLGATE_HEALTHZ": url, "HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)], capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin", **env}
    )


@pytest.mark.slow
def test_the_healthcheck_passes_on_200_and_fails_saying_why_otherwise(healthz) -> None:
    url, answers = healthz
    answers[:] = [(200, b"ok\n")]
    done = health_check(url)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{url}: 200 ok\n", "")
    answers[:] = [(503, b"draining\n")]
    done = health_check(url)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", f"{url}: 503 draining\n")
    nothing = f"http://127.0.0.1:{free_port()}/healthz"
    done = health_check(nothing)
    assert done.returncode == 1 and done.stderr.startswith(f"{nothing}: ") and "refused" in done.stderr


def test_the_healthcheck_asks_the_port_the_configuration_serves_healthz_on() -> None:
    spec = importlib.util.spec_from_file_location("healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    healthcheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(healthcheck)
    url = urlsplit(healthcheck.DEFAULT_URL)
    listen = cluster_config()["metrics"]["listen"]
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", int(listen.rsplit(":", 1)[1]), "/healthz")


# --- the Kubernetes manifests -------------------------------------------------------------------


def cluster_config() -> dict[str, Any]:
    return yaml.safe_load((KUBERNETES / "base" / "config" / "tollgate.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return kustomize(KUBERNETES / "base")


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return kustomize(example_copy(tmp_path_factory.mktemp("kubernetes") / "kubernetes"))


@pytest.fixture(scope="module")
def autoscaled(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return kustomize(example_copy(tmp_path_factory.mktemp("kubernetes") / "kubernetes", autoscale=True))


def validate(objects: list[dict[str, Any]]) -> None:
    """Each object against Kubernetes' schemas, strictly (an unknown field is an error)."""
    try:
        import kubernetes_validate
    except ImportError:
        pytest.skip(f"kubernetes-validate is not installed: {INSTALL}")
    for version in KUBERNETES_VERSIONS:
        release = kubernetes_validate.latest_version() if version == "latest" else version
        for o in objects:
            try:
                kubernetes_validate.validate(o, release, strict=True)
            except kubernetes_validate.ValidationError as e:
                raise AssertionError(f"{o['kind']} {o['metadata']['name']} on Kubernetes {release}: {e}") from None


def kinds(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((o["kind"], re.sub(r"-[a-z0-9]{10}$", "", o["metadata"]["name"])) for o in objects)


@pytest.mark.slow
def test_the_base_renders_and_validates(base) -> None:
    assert kinds(base) == [
        ("ConfigMap", "tollgate-config"),
        ("ConfigMap", "tollgate-console-config"),
        ("CronJob", "tollgate-reconcile"),
        ("Deployment", "tollgate-redis"),
        ("Job", "tollgate-migrate"),
        ("NetworkPolicy", "tollgate-redis"),
        ("PersistentVolumeClaim", "tollgate-redis-data"),
        ("PodDisruptionBudget", "tollgate"),
        ("PodDisruptionBudget", "tollgate-console"),
        ("Service", "tollgate"),
        ("Service", "tollgate-console"),
        ("Service", "tollgate-console-pods"),
        ("Service", "tollgate-pods"),
        ("Service", "tollgate-redis"),
        ("StatefulSet", "tollgate"),
        ("StatefulSet", "tollgate-console"),
    ]
    validate(base)


@pytest.mark.slow
def test_the_example_renders_with_its_secrets_and_validates(example, base) -> None:
    assert kinds(example) == sorted(
        [
            *kinds(base),
            ("Namespace", "tollgate"),
            ("Secret", "tollgate-admin-keys"),
            ("Secret", "tollgate-ca"),
            ("Secret", "tollgate-console-keys"),
            ("Secret", "tollgate-console-tls"),
            ("Secret", "tollgate-keys"),
            ("Secret", "tollgate-migrate"),
            ("Secret", "tollgate-records"),
        ]
    )
    validate(example)
    assert {o["metadata"].get("namespace") for o in example if o["kind"] != "Namespace"} == {"tollgate"}
    ca = find(example, "Secret", "tollgate-ca")
    assert sorted(ca["data"]) == sorted(CA_FILES)
    # The pods name the generated Secrets (their names carry a hash of their content).
    pod = find(example, "StatefulSet", "tollgate")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "ca")
    assert volume["secret"]["secretName"] == ca["metadata"]["name"]
    keys = find(example, "Secret", "tollgate-keys")
    records = find(example, "Secret", "tollgate-records")
    assert pod["containers"][0]["envFrom"] == [
        {"secretRef": {"name": keys["metadata"]["name"]}},
        {"secretRef": {"name": records["metadata"]["name"]}},
    ]
    assert pod["containers"][0]["image"] == f"registry.example.com/tollgate:{project_version()}"
    console = find(example, "StatefulSet", "tollgate-console")["spec"]["template"]["spec"]
    assert console["containers"][0]["image"] == f"registry.example.com/tollgate:{project_version()}"
    assert find(example, "Secret", "tollgate-console-tls")["type"] == "kubernetes.io/tls"


@pytest.mark.slow
def test_the_autoscale_component_adds_an_autoscaler_that_owns_the_replicas(autoscaled, example) -> None:
    assert kinds(autoscaled) == sorted([*kinds(example), ("HorizontalPodAutoscaler", "tollgate")])
    validate(autoscaled)
    hpa = find(autoscaled, "HorizontalPodAutoscaler", "tollgate")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("StatefulSet", "tollgate")
    assert "replicas" not in find(autoscaled, "StatefulSet", "tollgate")["spec"]
    assert find(example, "StatefulSet", "tollgate")["spec"]["replicas"] >= 2
    assert find(autoscaled, "StatefulSet", "tollgate-console")["spec"]["replicas"] == 2  # never scaled


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def gateway_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = find(objects, "StatefulSet", "tollgate")["spec"]["template"]["spec"]["containers"]
    return container


def port(container: dict[str, Any], name: str) -> int:
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return number


def test_the_pods_listen_where_the_image_and_the_configuration_say(base) -> None:
    container = gateway_container(base)
    assert container["image"] == f"tollgate:{project_version()}"
    assert "command" not in container and "args" not in container  # the image's `tollgate serve …`
    command = image_command()
    assert port(container, "proxy") == int(option(command, "listen_port"))
    host, _, metrics = cluster_config()["metrics"]["listen"].rpartition(":")
    assert host == "0.0.0.0"  # the kubelet probes the pod's address, not its loopback
    assert port(container, "metrics") == int(metrics)
    service = find(base, "Service", "tollgate")["spec"]
    assert {(p["port"], p["targetPort"]) for p in service["ports"]} == {(8080, "proxy"), (int(metrics), "metrics")}
    # A core for each worker the pod runs.
    (workers,) = [v["value"] for v in container["env"] if v["name"] == "TOLLGATE_WORKERS"]
    assert container["resources"]["requests"]["cpu"] == workers


def test_probes_ask_healthz_and_a_pod_stops_only_after_its_drain(base) -> None:
    pod = find(base, "StatefulSet", "tollgate")["spec"]["template"]["spec"]
    container = gateway_container(base)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
    drain_s = cluster_config().get("drain_s", DRAIN_S_DEFAULT)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and int(command[1]) > 0
    pause = int(command[1])
    # The grace period counts from the preStop: the pause and a whole drain must fit in it.
    assert pod["terminationGracePeriodSeconds"] > pause + drain_s
    # A draining pod answers 503: liveness must not restart it before its drain has ended.
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > pause + drain_s


def pod_templates(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            o["metadata"]["name"],
            (o["spec"]["jobTemplate"]["spec"] if o["kind"] == "CronJob" else o["spec"])["template"]["spec"],
        )
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet", "CronJob", "Job")
    ]


def test_every_pod_runs_as_the_restricted_pod_security_standard_asks(base) -> None:
    (user,) = instructions("USER")
    for name, pod in pod_templates(base):
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] != 0, name
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False, name
        for container in pod["containers"]:
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, name
            assert "memory" in container["resources"]["limits"] and container["resources"]["requests"], name
    pods = dict(pod_templates(base))
    for name in ("tollgate", "tollgate-console", "tollgate-reconcile", "tollgate-migrate"):
        pod = pods[name]["securityContext"]
        assert f"{pod['runAsUser']}:{pod['runAsGroup']}" == user.arguments, name


def mounts(objects: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """The gateway container's mount paths: (the mount, its volume; a volumeClaimTemplate's
    claim as {"persistentVolumeClaim": its spec})."""
    stateful_set = find(objects, "StatefulSet", "tollgate")["spec"]
    volumes = {v["name"]: v for v in stateful_set["template"]["spec"]["volumes"]}
    for claim in stateful_set.get("volumeClaimTemplates", []):
        volumes[claim["metadata"]["name"]] = {"persistentVolumeClaim": claim["spec"]}
    return {m["mountPath"]: (m, volumes[m["name"]]) for m in gateway_container(objects)["volumeMounts"]}


def test_the_configuration_ca_and_audit_are_mounted_where_the_image_reads_them(example) -> None:
    command, mounted = image_command(), mounts(example)
    config_path = Path(option(command, "tollgate_config"))
    mount, volume = mounted[str(config_path.parent)]
    assert mount["readOnly"] is True
    config_map = find(example, "ConfigMap", volume["configMap"]["name"])
    files = set(config_map["data"])
    policy = cluster_config()["policy"]["rego"]
    assert files == {config_path.name, *policy}
    mount, volume = mounted[option(command, "confdir")]
    assert mount["readOnly"] is True
    assert sorted(find(example, "Secret", volume["secret"]["secretName"])["data"]) == sorted(CA_FILES)
    # Writable places on a read-only root: the audit's directory, on the pod's own volume (it moves
    # with the pod, its records never lost with it), and /tmp for the supervisor.
    audit = Path(cluster_config()["audit"]["path"])
    mount, volume = mounted[str(audit.parent)]
    assert volume["persistentVolumeClaim"]["accessModes"] == ["ReadWriteOnce"] and not mount.get("readOnly")
    mount, volume = mounted["/tmp"]
    assert "emptyDir" in volume and not mount.get("readOnly")


def variables(value: Any) -> Iterator[str]:
    """The ${NAME}s of a configuration's string values, where Tollgate expands them."""
    if isinstance(value, str):
        yield from re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value)
    elif isinstance(value, dict | list):
        for item in value.values() if isinstance(value, dict) else value:
            yield from variables(item)


def test_every_variable_of_the_configuration_is_in_the_keys_secret(example) -> None:
    named = set(variables(cluster_config()))
    keys = find(example, "Secret", "tollgate-keys")
    records = find(example, "Secret", "tollgate-records")
    admin = find(example, "Secret", "tollgate-admin-keys")
    assert set(records["data"]) == set(env_file(RECORDS_EXAMPLE)) == {"TOLLGATE_SENDER_PASSWORD"}
    assert set(admin["data"]) == set(env_file(ADMIN_KEYS_EXAMPLE)) == {"OPENAI_ADMIN_KEY", "ANTHROPIC_ADMIN_KEY"}
    assert named and named == set(keys["data"]) | set(records["data"]) | set(admin["data"])
    assert set(keys["data"]) == set(env_file())
    redis = find(example, "Deployment", "tollgate-redis")["spec"]["template"]["spec"]["containers"][0]
    for variable in redis["env"]:
        reference = variable["valueFrom"]["secretKeyRef"]
        assert (reference["name"], reference["key"] in keys["data"]) == (keys["metadata"]["name"], True)


def test_the_reconcile_cronjob_alone_gets_the_admin_keys_and_reads_the_fleets_records(example) -> None:
    job = find(example, "CronJob", "tollgate-reconcile")["spec"]
    assert job["concurrencyPolicy"] == "Forbid"
    pod = job["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["tollgate", "reconcile", "--config", "/etc/tollgate/config/tollgate.yaml",
                                    "--from", "postgres", "--json"]  # fmt: skip
    # Exit 1 (differences found) fails the job at once; exit 2 (a vendor unreachable) is tried again.
    [rule] = job["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
    assert (rule["action"], rule["onExitCodes"]["values"]) == ("FailJob", [1])
    admin = find(example, "Secret", "tollgate-admin-keys")["metadata"]["name"]
    assert {"secretRef": {"name": admin}} in container["envFrom"]
    for name, other in pod_templates(example):
        if name != "tollgate-reconcile":
            assert admin not in json.dumps(other), name
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == "tollgate-config"
    # As the instances read it, with their Secrets' variables and no admin key.
    config = parse_config(cluster_config(), env={**env_file(), **env_file(RECORDS_EXAMPLE)})
    assert config.reconcile is not None and set(config.reconcile.vendors()) == {"openai", "anthropic"}
    assert config.audit.postgres is not None  # what --from postgres requires


def test_the_migrate_job_alone_gets_the_owners_dsn_and_migrates_what_the_others_use(example) -> None:
    job = find(example, "Job", "tollgate-migrate")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # The table the instances send to (audit.postgres.table), and with it tollgate reconcile's.
    table = cluster_config()["audit"]["postgres"].get("table", "tollgate_records")
    assert container["command"] == ["tollgate", "audit", "migrate", "--table", table]
    assert container["image"] == gateway_container(example)["image"]  # the schema the instances write
    # Exit 1 (a schema newer than the image, not the owner's role) fails at once; 2 is tried again.
    [rule] = job["spec"]["podFailurePolicy"]["rules"]
    assert (rule["action"], rule["onExitCodes"]["values"]) == ("FailJob", [1])
    secret = find(example, "Secret", "tollgate-migrate")
    assert set(secret["data"]) == set(env_file(MIGRATE_EXAMPLE)) == {"TOLLGATE_RECORDS_DSN"}
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    for name, other in pod_templates(example):
        if name != "tollgate-migrate":
            assert secret["metadata"]["name"] not in json.dumps(other), name
    # As the owner, on the instances' database.
    owner = urlsplit(env_file(MIGRATE_EXAMPLE)["TOLLGATE_RECORDS_DSN"])
    sender = urlsplit(cluster_config()["audit"]["postgres"]["dsn"])
    assert owner.username == "tollgate_owner" and "CREATE ROLE tollgate_owner" in ROLES_SQL.read_text(encoding="utf-8")
    assert (owner.hostname, owner.port, owner.path) == (sender.hostname, sender.port, sender.path)
    # `kubectl apply -l app.kubernetes.io/component=migrate` applies the Job and its Secret first.
    selected = {"app.kubernetes.io/component": "migrate"}
    assert {o["metadata"]["name"] for o in example if selected.items() <= o["metadata"].get("labels", {}).items()} == {
        job["metadata"]["name"], secret["metadata"]["name"]}  # fmt: skip
    kustomization = (KUBERNETES / "example" / "kustomization.yaml").read_text(encoding="utf-8")
    assert "kubectl apply -k . -l app.kubernetes.io/component=migrate" in kustomization


def test_the_cluster_configuration_loads_and_its_policy_decides() -> None:
    config_dir = KUBERNETES / "base" / "config"
    config = load_config(config_dir / "tollgate.yaml", env=env_file() | env_file(RECORDS_EXAMPLE))
    assert [c.name for c in config.clients] == ["team-a"] and config.limits
    policy = Policy(config.policy.rego)
    document = {"client": {"name": "team-a", "groups": ["research"]}, "model": "gpt-4o-mini", "unread": []}
    assert policy.decide(whole(CALL_DECISION), document).allowed
    document["client"]["groups"] = ["suspended"]
    assert policy.decide(whole(CALL_DECISION), document).deny_reasons == ("group suspended is blocked",)


def test_the_ledger_is_the_redis_the_manifests_run_and_only_tollgate_reaches_it(base) -> None:
    store = urlsplit(cluster_config()["ledger"]["store"])
    assert store.scheme == "redis"
    service = find(base, "Service", store.hostname or "")
    assert [p["port"] for p in service["spec"]["ports"]] == [store.port]
    redis = find(base, "Deployment", "tollgate-redis")
    assert service["spec"]["selector"] == redis["spec"]["selector"]["matchLabels"]
    assert "--appendonly" in redis["spec"]["template"]["spec"]["containers"][0]["args"]
    gateway = find(base, "StatefulSet", "tollgate")["spec"]["selector"]["matchLabels"]
    rule = find(base, "NetworkPolicy", "tollgate-redis")["spec"]
    assert rule["podSelector"]["matchLabels"] == service["spec"]["selector"]
    assert rule["ingress"] == [{"from": [{"podSelector": {"matchLabels": gateway}}], "ports": [{"port": "redis"}]}]


def test_the_service_budget_and_template_select_the_same_pods(base) -> None:
    stateful_set = find(base, "StatefulSet", "tollgate")
    labels = stateful_set["spec"]["template"]["metadata"]["labels"]
    selector = stateful_set["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert find(base, "Service", "tollgate")["spec"]["selector"] == selector
    assert find(base, "PodDisruptionBudget", "tollgate")["spec"]["selector"]["matchLabels"] == selector
    for kind, other in (("Deployment", "tollgate-redis"), ("StatefulSet", "tollgate-console")):
        labels = find(base, kind, other)["spec"]["template"]["metadata"]["labels"]
        assert not selector.items() <= labels.items(), other  # the gateway's selector takes no other pod


# --- the fleet's instances and its one console --------------------------------------------------


def test_each_instance_keeps_its_name_and_its_volume_wherever_it_runs(base) -> None:
    spec = find(base, "StatefulSet", "tollgate")["spec"]
    # Its records' `instance` is the pod's name (tollgate-0, …), the same after every restart.
    (instance,) = [v for v in gateway_container(base)["env"] if v["name"] == "TOLLGATE_INSTANCE"]
    assert instance["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # Its audit file, in-flight file and positions are on a volume of its own, kept when it is
    # scaled away or deleted: what PostgreSQL has not taken waits there.
    (claim,) = spec["volumeClaimTemplates"]
    audit = Path(cluster_config()["audit"]["path"])
    (data,) = [m for m in gateway_container(base)["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert data["mountPath"] == str(audit.parent)
    assert claim["metadata"]["name"] not in {v["name"] for v in spec["template"]["spec"]["volumes"]}
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    # The headless Service the StatefulSet names, over the same pods as the front Service.
    headless = find(base, "Service", spec["serviceName"])["spec"]
    assert headless["clusterIP"] == "None"
    assert (
        headless["selector"] == spec["selector"]["matchLabels"] == find(base, "Service", "tollgate")["spec"]["selector"]
    )


def test_the_instances_send_their_records_to_postgresql_as_the_sender_role() -> None:
    # The instances as the sender's role, the console as its own, on one database; their passwords
    # from their own Secrets.
    sender = urlsplit(cluster_config()["audit"]["postgres"]["dsn"])
    console = console_config()
    reader = urlsplit(console["audit"]["postgres"]["dsn"])
    assert (sender.username, sender.password) == ("tollgate_sender", "${TOLLGATE_SENDER_PASSWORD}")
    assert (reader.username, reader.password) == ("tollgate_console", "${TOLLGATE_CONSOLE_PASSWORD}")
    assert (sender.hostname, sender.port, sender.path) == (reader.hostname, reader.port, reader.path)
    assert console["console"]["postgres_dsn"] == console["audit"]["postgres"]["dsn"]
    roles = ROLES_SQL.read_text(encoding="utf-8")
    assert "CREATE ROLE tollgate_sender" in roles and "CREATE ROLE tollgate_console" in roles


def console_config() -> dict[str, Any]:
    return yaml.safe_load((KUBERNETES / "base" / "console" / "tollgate.yaml").read_text(encoding="utf-8"))


def console_pod(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    stateful_set = find(objects, "StatefulSet", "tollgate-console")
    pod = stateful_set["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def test_the_console_is_two_replicas_updated_one_at_a_time_and_mounts_no_provider_secret(example) -> None:
    spec = find(example, "StatefulSet", "tollgate-console")["spec"]
    # Its sessions live in PostgreSQL: two replicas serve the same people, replaced one at a time
    # (a budget of one away at once), on two nodes where there are.
    assert (spec["replicas"], spec["updateStrategy"]) == (2, {"type": "RollingUpdate"})
    budget = find(example, "PodDisruptionBudget", "tollgate-console")["spec"]
    assert budget == {"maxUnavailable": 1, "selector": spec["selector"]}
    anti_affinity = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    (spread,) = anti_affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert spread["podAffinityTerm"]["labelSelector"] == spec["selector"]
    assert spread["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    headless = find(example, "Service", spec["serviceName"])["spec"]
    assert headless["clusterIP"] == "None" and headless["selector"] == spec["selector"]["matchLabels"]
    pod, container = console_pod(example)
    console_keys = find(example, "Secret", "tollgate-console-keys")["metadata"]["name"]
    tls = find(example, "Secret", "tollgate-console-tls")["metadata"]["name"]
    assert container["envFrom"] == [{"secretRef": {"name": console_keys}}] and "env" not in container
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {tls}
    # Not one entry of the instances' Secrets (keys, virtual keys, Redis, the sender's DSN) in its pod.
    theirs = {find(example, "Secret", name)["metadata"]["name"] for name in ("tollgate-keys", "tollgate-records")}
    theirs.add(find(example, "Secret", "tollgate-ca")["metadata"]["name"])
    assert not theirs & set(re.findall(r"tollgate-[a-z-]+-[a-z0-9]{10}", yaml.safe_dump(pod)))
    # Its configuration names what its Secret holds, and no provider, key or ledger.
    config = console_config()
    assert set(variables(config)) == set(find(example, "Secret", "tollgate-console-keys")["data"])
    assert (
        set(variables(config))
        == set(env_file(CONSOLE_EXAMPLE))
        == {"TOLLGATE_CONSOLE_PASSWORD", "CONSOLE_OIDC_SECRET", "CONSOLE_CURSOR_SECRET"}
    )
    assert {"providers", "ledger", "limits", "egress", "mcp"}.isdisjoint(config)
    assert all(set(client) <= {"name", "groups", "people"} for client in config["clients"])


def test_the_console_serves_its_configuration_over_tls_reading_postgresql_with_its_role(example) -> None:
    pod, container = console_pod(example)
    stateful_set = find(example, "StatefulSet", "tollgate-console")["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    volumes |= {c["metadata"]["name"]: {"claim": c["spec"]} for c in stateful_set["volumeClaimTemplates"]}
    mounted = {m["mountPath"]: (m, volumes[m["name"]]) for m in container["volumeMounts"]}
    command = container["command"]
    assert command[:3] == ["tollgate", "console", "--config"] and len(command) == 4
    mount, volume = mounted[str(Path(command[3]).parent)]
    config_map = find(example, "ConfigMap", volume["configMap"]["name"])
    assert mount["readOnly"] is True and set(config_map["data"]) == {Path(command[3]).name}
    config = yaml.safe_load(config_map["data"]["tollgate.yaml"])
    console = config["console"]
    # Every interface, over TLS: the certificate and key where the TLS Secret is mounted.
    host, _, listen_port = console["listen"].rpartition(":")
    assert host == "0.0.0.0" and int(listen_port) == port(container, "https")
    service = find(example, "Service", "tollgate-console")["spec"]
    assert service["ports"] == [{"name": "https", "port": 443, "targetPort": "https"}]
    assert service["selector"] == find(example, "StatefulSet", "tollgate-console")["spec"]["selector"]["matchLabels"]
    for name, file in (("cert", "tls.crt"), ("key", "tls.key")):
        path = Path(console["tls"][name])
        mount, volume = mounted[str(path.parent)]
        assert mount["readOnly"] is True and path.name == file
        assert file in find(example, "Secret", volume["secret"]["secretName"])["data"]
    # PostgreSQL with its own role; people sign in with the identity provider, its secret a variable.
    assert urlsplit(config["audit"]["postgres"]["dsn"]).username == "tollgate_console"
    assert console["postgres_dsn"] == config["audit"]["postgres"]["dsn"]
    sign_in = console["sign_in"]
    assert sign_in["client_secret"] == "${CONSOLE_OIDC_SECRET}"
    assert urlsplit(sign_in["redirect_uri"]).scheme == "https" and sign_in["redirect_uri"].endswith("/auth/callback")
    assert sign_in["security"] and sign_in["leads"]
    # The cursors sealed with one secret of its Secret: a page's cursors hold on either replica.
    assert console["cursor_secret"] == "${CONSOLE_CURSOR_SECRET}"
    # Writable places on a read-only root: each replica's own files (the access log, the saved
    # index of the records) on a volume of its own that outlives the pod, and /tmp.
    mount, volume = mounted[str(Path(config["audit"]["path"]).parent)]
    assert not mount.get("readOnly") and volume["claim"]["accessModes"] == ["ReadWriteOnce"]
    assert stateful_set["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    mount, volume = mounted["/tmp"]
    assert "emptyDir" in volume and not mount.get("readOnly")


def test_the_console_configuration_loads() -> None:
    from tollgate.configuration.console_settings import ConsoleConfig

    data = console_config()
    # Keys of the console's contract that this checkout does not know yet are left out, no others.
    unknown = set(data["console"]) - set(ConsoleConfig.model_fields)
    assert unknown <= {"sign_in", "postgres_dsn"}
    data["console"] = {k: v for k, v in data["console"].items() if k not in unknown}
    config = parse_config(data, env=env_file(CONSOLE_EXAMPLE))
    assert [(c.name, c.people) for c in config.clients] == [("team-a", ("alice@example.com", "bob@example.com"))]
    assert config.audit.postgres is not None and config.console.tls is not None
    assert [c.name for c in config.clients] == [c.name for c in load_config(
        KUBERNETES / "base" / "config" / "tollgate.yaml", env=env_file() | env_file(RECORDS_EXAMPLE)).clients]  # fmt: skip
