"""What the deployment files promise beyond their schemas: they run real `ownkey`
commands with real settings, one beat, workers that scale and stop gracefully, no
secret in a committed file or the image."""

from __future__ import annotations

import re
import shlex

import pytest

from shared.config import Settings
from tests.unit.deploy_files import (
    COMPOSE_FILES,
    DEPLOY,
    K8S_DIR,
    REPO,
    SYSTEMD_UNITS,
    NotAnOwnkeyCommand,
    compose_services,
    dockerfile_stages,
    duration_seconds,
    env_example_names,
    environment_names,
    interpolated_names,
    k8s_containers,
    k8s_files,
    k8s_objects,
    load_yaml,
    parse_ownkey_args,
    pod_spec,
    runs_ownkey,
    unit_directives,
    unit_environment,
    unit_ownkey_args,
)
from worker.celery_app import DEFAULT_QUEUE

SETTINGS_NAMES = {f"OWNKEY_{name.upper()}" for name in Settings.model_fields}
STEP_TIMEOUT = Settings.model_fields["step_timeout_seconds"].default


def ownkey_compose_services():
    for path in COMPOSE_FILES:
        for name, service in compose_services(path).items():
            if runs_ownkey(service):
                yield path, name, service


def image_cmd() -> list[str]:
    (cmd,) = [i for i in dockerfile_stages()[-1] if i.cmd == "CMD"]
    return list(cmd.value)


def all_invocations():
    """(where, ownkey arguments) for every process any deployment file starts."""
    yield "Dockerfile CMD", image_cmd()
    for path, name, service in ownkey_compose_services():
        yield f"{path.name}:{name}", service.get("command", image_cmd())
    for doc, container in k8s_containers():
        assert container.get("command") in (None, ["ownkey"]), "the image's entrypoint is ownkey"
        yield f"k8s {doc['metadata']['name']}", container["args"]
    for unit in SYSTEMD_UNITS:
        yield unit.name, unit_ownkey_args(unit)


INVOCATIONS = list(all_invocations())


# --- commands and settings ----------------------------------------------------------------


@pytest.mark.parametrize(("where", "args"), INVOCATIONS, ids=[w for w, _ in INVOCATIONS])
def test_every_process_is_a_real_ownkey_command(where, args):
    invocation = parse_ownkey_args(args)
    assert invocation.command in {"api", "worker", "beat", "flower", "db upgrade"}, where


@pytest.mark.parametrize("args", [["wroker"], ["worker", "--queue", "x"], ["db"], ["beat", "x"]])
def test_the_command_parser_refuses_what_ownkey_would(args):
    with pytest.raises(NotAnOwnkeyCommand):
        parse_ownkey_args(args)


def set_ownkey_variables():
    """(where, NAME) for every OWNKEY_* variable a deployment file sets."""
    for path, name, service in ownkey_compose_services():
        for var in environment_names(service.get("environment")):
            yield f"{path.name}:{name}", var
    for configmap in k8s_objects("ConfigMap"):
        for var in configmap["data"]:
            yield f"ConfigMap {configmap['metadata']['name']}", var
    for doc, container in k8s_containers():
        for env in container.get("env", []):
            yield f"k8s {doc['metadata']['name']}", env["name"]
    for unit in SYSTEMD_UNITS:
        for var in unit_environment(unit):
            yield unit.name, var
    for stage in dockerfile_stages():
        for env in (i for i in stage if i.cmd == "ENV"):
            for var in env.value[::2]:
                yield "Dockerfile", var


def test_every_ownkey_variable_set_is_a_setting():
    found = [(where, var) for where, var in set_ownkey_variables() if var.startswith("OWNKEY_")]
    assert len(found) > 20
    unknown = [(where, var) for where, var in found if var not in SETTINGS_NAMES]
    assert unknown == []


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_compose_interpolation_is_documented_in_env_example(path):
    names = interpolated_names(path.read_text())
    assert names
    assert names - env_example_names() == set()


def test_interpolation_reader_skips_escaped_dollars():
    assert interpolated_names("a: ${A:?x} $B $${C} $$D") == {"A", "B"}


# --- the image ------------------------------------------------------------------------------


def test_image_final_stage_runs_as_non_root_with_a_healthcheck():
    *builds, final = dockerfile_stages()
    assert builds, "multi-stage: dependencies are built in a stage of their own"
    (user,) = [i.value[0] for i in final if i.cmd == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric, so Kubernetes can check runAsNonRoot"
    (healthcheck,) = [i for i in final if i.cmd == "HEALTHCHECK"]
    assert healthcheck.value[0] == "CMD"
    for doc in k8s_objects("Deployment") + k8s_objects("Job"):
        context = pod_spec(doc)["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == int(uid), doc["metadata"]["name"]


def test_image_final_stage_copies_only_the_virtualenv_and_installs_nothing():
    *builds, final = dockerfile_stages()
    build_names = {stage[0].value[-1] for stage in builds}
    copies = [i for i in final if i.cmd in ("COPY", "ADD")]
    assert copies
    for copy in copies:
        assert copy.cmd == "COPY" and any(f[len("--from=") :] in build_names for f in copy.flags)
        assert copy.value[:-1] == ("/opt/ownkey",), copy.original
    for run in (i for i in final if i.cmd == "RUN"):
        assert not re.search(r"apt-get install|apk add|pip install|build-essential", run.value[0])


def test_image_keeps_secrets_out():
    for stage in dockerfile_stages():
        for env in (i for i in stage if i.cmd in ("ENV", "ARG")):
            assert not re.search(r"SECRET|PASSWORD|TOKEN|BASIC_AUTH", " ".join(env.value))
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", ".ownkey/", ".venv/", ".git/"} <= set(ignored)


# --- compose ---------------------------------------------------------------------------------


def test_compose_runs_migrate_once_before_everything_that_uses_the_database():
    services = compose_services(REPO / "docker-compose.yml")
    migrate = services["migrate"]
    assert parse_ownkey_args(migrate["command"]).command == "db upgrade"
    assert migrate["restart"] == "no"
    for name in ("api", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    for name in ("redis", "postgres", "flower"):
        assert "test" in services[name]["healthcheck"], name
    assert "healthcheck" not in services["api"], "the image's HEALTHCHECK probes the API"


def test_compose_keeps_secrets_out_and_publishes_on_loopback_only():
    services = compose_services(REPO / "docker-compose.yml")
    assert "appendonly" in " ".join(services["redis"]["command"])
    for path, name, service in ownkey_compose_services():
        env = service.get("environment", {})
        for var in ("OWNKEY_SECRET_KEY", "OWNKEY_FLOWER_BASIC_AUTH"):
            if var in env:
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", env[var]), f"{path.name}:{name}"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{path.name}:{name} publishes {port}"
    assert "OWNKEY_FLOWER_BASIC_AUTH" in services["flower"]["environment"]


def compose_workers():
    for path, name, service in ownkey_compose_services():
        if parse_ownkey_args(service["command"]).command == "worker":
            yield f"{path.name}:{name}", service


def test_compose_workers_scale_and_outlast_a_step():
    workers = list(compose_workers())
    assert len(workers) >= 3
    for where, worker in workers:
        assert "container_name" not in worker and "ports" not in worker, where
        assert duration_seconds(worker["stop_grace_period"]) > STEP_TIMEOUT, where


def test_gpu_profile_worker_consumes_the_local_gpu_queue():
    services = compose_services(DEPLOY / "compose.worker.yml")
    gpu = services["worker-gpu"]
    assert parse_ownkey_args(gpu["command"]).params["queues"] == "local-gpu"
    assert gpu["profiles"] == services["ollama"]["profiles"] == ["gpu"]
    assert "profiles" not in services["worker"]


def test_duration_reader():
    assert duration_seconds("180s") == 180
    assert duration_seconds("2m30s") == 150
    with pytest.raises(ValueError):
        duration_seconds("180")


# --- exactly one beat --------------------------------------------------------------------------


def test_exactly_one_beat_everywhere():
    compose_beats = [
        (path.name, service)
        for path, _, service in ownkey_compose_services()
        if parse_ownkey_args(service["command"]).command == "beat"
    ]
    assert [name for name, _ in compose_beats] == ["docker-compose.yml"]
    (_, beat) = compose_beats[0]
    assert "scale" not in beat and beat.get("deploy", {}).get("replicas", 1) == 1

    k8s_beats = [
        doc
        for doc, container in k8s_containers()
        if parse_ownkey_args(container["args"]).command == "beat"
    ]
    assert len(k8s_beats) == 1
    (deployment,) = k8s_beats
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    scaled = {s["spec"]["scaleTargetRef"]["name"] for s in k8s_objects("ScaledObject")}
    assert deployment["metadata"]["name"] not in scaled

    unit_beats = [
        u for u in SYSTEMD_UNITS if parse_ownkey_args(unit_ownkey_args(u)).command == "beat"
    ]
    assert [u.name for u in unit_beats] == ["ownkey-beat.service"], "not a template unit"


# --- Kubernetes ---------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_the_namespace():
    kustomization = load_yaml(K8S_DIR / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(p.name for p in k8s_files())
    (namespace,) = k8s_objects("Namespace")
    assert kustomization["namespace"] == namespace["metadata"]["name"]
    assert k8s_objects("Secret") == [], "Secrets are created with kubectl, never committed"


def k8s_deployment(name):
    (found,) = [d for d in k8s_objects("Deployment") if d["metadata"]["name"] == name]
    return found


def test_k8s_workers_outlast_a_step_and_scale_on_the_default_queue():
    worker = k8s_deployment("ownkey-worker")
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > STEP_TIMEOUT
    assert "replicas" not in worker["spec"], "the autoscaler owns the replica count"
    (scaled,) = k8s_objects("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "ownkey-worker"
    assert scaled["spec"]["minReplicaCount"] >= 1, "workers also serve the control queue"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == DEFAULT_QUEUE
    (auth,) = k8s_objects("TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]


def test_k8s_containers_are_locked_down_and_sized():
    for doc, container in k8s_containers():
        where = doc["metadata"]["name"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], where
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
        assert "memory" in container["resources"]["limits"], where


def test_k8s_api_probes_health_and_flower_sits_under_its_ingress_path():
    api = pod_spec(k8s_deployment("ownkey-api"))["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/health"
    flower = pod_spec(k8s_deployment("ownkey-flower"))["containers"][0]
    prefix = "/" + parse_ownkey_args(flower["args"]).params["url_prefix"]
    assert flower["readinessProbe"]["httpGet"]["path"] == f"{prefix}/healthcheck"
    (auth,) = [e for e in flower["env"] if e["name"] == "OWNKEY_FLOWER_BASIC_AUTH"]
    assert "secretKeyRef" in auth["valueFrom"]
    (ingress,) = k8s_objects("Ingress")
    assert ingress["spec"]["tls"]
    paths = {
        p["path"]: p["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    }
    assert paths == {prefix: "ownkey-flower", "/": "ownkey-api"}


def test_readme_creates_every_secret_the_manifests_read():
    readme = (DEPLOY / "README.md").read_text()
    created: dict[str, set[str]] = {}
    for command in re.findall(r"kubectl .*create secret generic (?:\\\n|[^\n])*", readme):
        words = shlex.split(command.replace("\\\n", " "))
        name = words[words.index("generic") + 1]
        keys = {w.split("=", 1)[1].split("=", 1)[0] for w in words if w.startswith("--from-")}
        created[name] = keys
    needed: dict[str, set[str]] = {}
    for _, container in k8s_containers():
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                needed.setdefault(source["secretRef"]["name"], set())
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                needed.setdefault(ref["name"], set()).add(ref["key"])
    for auth in k8s_objects("TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            needed.setdefault(ref["name"], set()).add(ref["key"])
    assert set(created) == set(needed)
    for name, keys in needed.items():
        assert keys <= created[name], name
    assert created["ownkey"] <= SETTINGS_NAMES
    assert {"OWNKEY_DATABASE_URL", "OWNKEY_REDIS_URL", "OWNKEY_SECRET_KEY"} <= created["ownkey"]


# --- systemd ------------------------------------------------------------------------------------


def test_systemd_worker_outlasts_a_step_and_every_unit_reads_the_env_file():
    worker = unit_directives(DEPLOY / "systemd" / "ownkey-worker@.service")
    assert float(worker["Service.TimeoutStopSec"][0]) > STEP_TIMEOUT
    assert {u.name for u in SYSTEMD_UNITS} >= {
        "ownkey-api.service",
        "ownkey-worker@.service",
        "ownkey-beat.service",
        "ownkey-flower.service",
    }
    for unit in SYSTEMD_UNITS:
        directives = unit_directives(unit)
        assert directives["Service.EnvironmentFile"] == ["/etc/ownkey/ownkey.env"], unit.name
        assert directives["Service.User"] == ["ownkey"], unit.name


def test_env_example_documents_every_setting():
    assert SETTINGS_NAMES - env_example_names() == set()
