"""deploy/k8s/hybrid: the control plane and its data planes as Kubernetes objects (SPEC 18)."""

from __future__ import annotations

import pytest
import yaml

from tests.test_deploy_artifacts import K8S, KUBERNETES_VERSION, known_env_names, yaml_documents

HYBRID = K8S / "hybrid"
KUSTOMIZATION = HYBRID / "kustomization.yaml"
DATA_PLANE_SECRET = HYBRID / "data-plane-secret.template.yaml"
NEVER_ON_A_DATA_PLANE = {"DATABASE_URL", "JWT_PRIVATE_KEY", "JWT_PRIVATE_KEY_FILE", "JWT_SIGNING_KEY"}


def hybrid_objects() -> dict[tuple[str, str], dict]:
    files = sorted(p for p in HYBRID.glob("*.yaml") if p != KUSTOMIZATION)
    return {(doc["kind"], doc["metadata"]["name"]): doc for path in files for doc in yaml_documents(path)}


def data_plane_container() -> dict:
    return hybrid_objects()[("Deployment", "gateway-data-plane")]["spec"]["template"]["spec"]["containers"][0]


def test_the_overlay_builds_on_the_base_and_leaves_the_secrets_out():
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    resources = kustomization["resources"]
    assert "../" in resources
    assert all((HYBRID / name).exists() for name in resources if name != "../")
    assert DATA_PLANE_SECRET.name not in resources
    patch = yaml.safe_load((HYBRID / kustomization["patches"][0]["path"]).read_text())
    env = patch["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "GATEWAY_ROLE", "value": "control_plane"} in env


def test_data_planes_get_no_database_and_no_private_key():
    container = data_plane_container()
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["GATEWAY_ROLE"] == "data_plane"
    assert env["GATEWAY_CONFIG_SOURCE"].startswith("http://gateway")
    secret_refs = [source["secretRef"]["name"] for source in container["envFrom"] if "secretRef" in source]
    assert secret_refs == ["gateway-data-plane-secrets"]  # not the control plane's gateway-secrets
    held = set(yaml.safe_load(DATA_PLANE_SECRET.read_text())["stringData"])
    assert held == {"SECRET_KEY", "REDIS_URL", "GATEWAY_CLUSTER_TOKEN"}
    assert not (held | set(env)) & NEVER_ON_A_DATA_PLANE
    assert (held | set(env)) <= known_env_names()


def test_the_data_plane_service_selects_the_data_plane_pods_and_probes_are_health_urls():
    objects = hybrid_objects()
    pods = objects[("Deployment", "gateway-data-plane")]["spec"]["template"]["metadata"]["labels"]
    selector = objects[("Service", "gateway-data-plane")]["spec"]["selector"]
    assert selector.items() <= pods.items() and selector["app.kubernetes.io/component"] == "data-plane"
    container = data_plane_container()
    probes = {name: container[name]["httpGet"]["path"] for name in ("startupProbe", "readinessProbe")}
    assert probes == {"startupProbe": "/health/startup", "readinessProbe": "/health/ready"}


def test_the_hybrid_manifests_match_the_kubernetes_schemas():
    schemas = pytest.importorskip("kubernetes_validate.utils", reason="kubernetes-validate is absent")
    for (kind, name), doc in hybrid_objects().items():
        if "spec" in doc and kind == "Deployment" and "replicas" not in doc["spec"]:
            continue  # a strategic-merge patch, not a whole object
        try:
            schemas.validate(doc, KUBERNETES_VERSION, strict=True)
        except schemas.ValidationError as exc:
            pytest.fail(f"{kind}/{name}: {exc.message} at {list(exc.absolute_path)}")
