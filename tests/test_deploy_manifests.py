"""deploy/: every kustomization rendered by the real ``kubectl kustomize`` (kustomize v4 or newer) and
validated offline against the Kubernetes schemas that ``kubernetes-validate`` ships, then checked
against each other, the container's defaults, the Containerfile, the prometheus-adapter rule and
the podman configuration. Nothing here needs a cluster, a registry or podman."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from harness import ROOT
from squeezenet_mar.container.settings import settings_from_env

DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
BASE = KUBERNETES / "base"
ZOO_URL = KUBERNETES / "overlays" / "zoo-url"
ADAPTER_RULES = DEPLOY / "prometheus-adapter" / "rules.yaml"
CONTAINERFILE = (DEPLOY / "Containerfile").read_text()
# The oldest Kubernetes minor release still in common support, and the newest the package knows.
VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
MEASURED_MEMORY_MB = 630  # the container (2 workers) under 8 clients of 12 MP photos, 2026-12-05
LARGEST_DECODE_MB = 218  # the largest accepted image of any kind needs this to decode (test_container)
KUSTOMIZATIONS = sorted(path.parent for path in DEPLOY.rglob("kustomization.yaml"))
OLDEST_KUSTOMIZE = (4, 0)


def load_kustomization(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


@functools.cache
def kubectl() -> str:
    """``kubectl``, with a kustomize of v4 or newer; the test fails saying what to install otherwise."""
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail(
            "kubectl is not installed: the deploy tests render every kustomization with "
            "`kubectl kustomize`. Install it with `sudo make system-setup` (Debian's kubernetes-client)"
        )
    done = subprocess.run([found, "version", "--client", "-o", "json"], capture_output=True, text=True)
    version = json.loads(done.stdout or "{}").get("kustomizeVersion", "") if done.returncode == 0 else ""
    match = re.fullmatch(r"v?(\d+)\.(\d+).*", version)
    if not match or (int(match.group(1)), int(match.group(2))) < OLDEST_KUSTOMIZE:
        pytest.fail(
            f"{found}: its kustomize is {version or 'unknown'}, older than v4: the layout of deploy/ "
            "needs kustomize v4 or newer (kubectl 1.21 or newer)"
        )
    return found


@functools.cache
def render(folder: Path) -> tuple[dict[str, Any], ...]:
    """What ``kubectl kustomize folder`` builds: its documents."""
    done = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"kubectl kustomize {folder.relative_to(ROOT)} failed:\n{done.stderr}")
    return tuple(document for document in yaml.safe_load_all(done.stdout) if document)


def resources(folder: Path = BASE) -> dict[str, dict[str, Any]]:
    """kind -> the rendered resource."""
    return {document["kind"]: document for document in render(folder)}


def quantity(value: str) -> float:
    """A Kubernetes quantity (``500m``, ``2``, ``512Mi``, ``1Gi``) as a number of cores or bytes."""
    units = {"m": 1e-3, "": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([\d.]+)([A-Za-z]*)", str(value))
    if not match or match.group(2) not in units:
        raise ValueError(f"not a quantity: {value!r}")
    return float(match.group(1)) * units[match.group(2)]


@pytest.fixture(scope="module")
def kinds() -> dict[str, dict[str, Any]]:
    return resources()


@pytest.fixture(scope="module")
def pod(kinds) -> dict[str, Any]:
    return kinds["Deployment"]["spec"]["template"]


@pytest.fixture(scope="module")
def mms(pod) -> dict[str, Any]:
    [container] = pod["spec"]["containers"]
    return container


# ----------------------------------------------------------------------------------- validation
def test_kubectl_renders_kustomizations_with_kustomize_v4_or_newer():
    assert kubectl()


def test_the_kustomizations_are_the_base_and_the_overlays_beside_it_never_inside_it():
    """An overlay inside its base is a cycle for kustomize v5 ("candidate root ... contains visited
    root"): every kustomization's resources lie outside its own folder or in files of it."""
    assert KUSTOMIZATIONS == [BASE, ZOO_URL]
    for folder in KUSTOMIZATIONS:
        for entry in load_kustomization(folder).get("resources", []):
            target = (folder / entry).resolve()
            assert target.is_file() or not folder.resolve().is_relative_to(target), (folder, entry)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_kustomization_builds_and_what_it_builds_is_valid(folder, version):
    documents = render(folder)
    assert {d["kind"] for d in documents} == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


def test_the_base_lists_every_manifest_of_its_folder():
    listed = set(load_kustomization(BASE)["resources"])
    on_disk = {path.name for path in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_the_zoo_url_overlay_gives_the_generic_image_a_zoo_url_and_a_trusted_key():
    overlay = load_kustomization(ZOO_URL)
    assert overlay["resources"] == ["../../base"]
    deployment = resources(ZOO_URL)["Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "squeezenet-mms:generic"
    env = {item["name"]: item["value"] for item in container["env"]}
    assert re.fullmatch(r"https://\S+\.mar", env["SQUEEZENET_MODEL_URL"])
    # A downloaded archive's signature must verify against the publisher's key, mounted read-only.
    spec = deployment["spec"]["template"]["spec"]
    [mount] = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "trust"]
    assert mount["readOnly"] and env["SQUEEZENET_TRUSTED_KEY"].startswith(mount["mountPath"] + "/")
    [volume] = [v for v in spec["volumes"] if v["name"] == "trust"]
    assert volume["configMap"]["name"] == "squeezenet-trust"


# ------------------------------------------------------------------------------------- semantics
def test_the_service_exposes_only_the_inference_port(kinds, mms):
    [port] = kinds["Service"]["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (8080, "http")
    assert [(p["name"], p["containerPort"]) for p in mms["ports"]] == [("http", 8080), ("metrics", 8082)]
    assert kinds["Service"]["spec"]["type"] == "ClusterIP"
    assert "8081" not in yaml.safe_dump(kinds["Service"])
    assert "8082" not in yaml.safe_dump(kinds["Service"]) and "metrics" not in yaml.safe_dump(
        kinds["Service"]
    )


def test_prometheus_scrapes_the_metrics_port_the_entrypoint_serves(pod, mms):
    """The annotations name the container's metrics port, which is the entrypoint's default."""
    annotations = pod["metadata"]["annotations"]
    [metrics] = [p for p in mms["ports"] if p["name"] == "metrics"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == metrics["containerPort"]
    env = {item["name"]: item["value"] for item in mms["env"]}
    address = env.get("SQUEEZENET_METRICS_ADDRESS") or settings_from_env({}).metrics_address
    assert address == f"http://0.0.0.0:{metrics['containerPort']}"


def test_the_hpa_scales_on_the_queue_depth_per_pod_from_the_adapter_rule_and_on_cpu(kinds):
    queue, cpu = kinds["HorizontalPodAutoscaler"]["spec"]["metrics"]
    assert queue["type"] == "Pods" and queue["pods"]["target"]["type"] == "AverageValue"
    assert quantity(queue["pods"]["target"]["averageValue"]) > 0
    assert (cpu["type"], cpu["resource"]["name"]) == ("Resource", "cpu")
    [rule] = yaml.safe_load(ADAPTER_RULES.read_text())["rules"]
    assert rule["name"]["as"] == queue["pods"]["metric"]["name"] == "squeezenet_queue_depth"
    assert re.fullmatch(rule["name"]["matches"], "squeezenet_queue_depth")
    assert rule["seriesQuery"].startswith("squeezenet_queue_depth{")
    overrides = rule["resources"]["overrides"]
    assert overrides == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    for placeholder in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
        assert placeholder in rule["metricsQuery"]


def test_replicas_spread_across_nodes(pod):
    constraints = {c["topologyKey"]: c for c in pod["spec"]["topologySpreadConstraints"]}
    nodes = constraints["kubernetes.io/hostname"]
    assert (nodes["maxSkew"], nodes["whenUnsatisfiable"]) == (1, "DoNotSchedule")
    for constraint in constraints.values():
        assert constraint["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


def test_every_selector_matches_the_pods(kinds, pod):
    labels = pod["metadata"]["labels"]
    for selector in (
        kinds["Deployment"]["spec"]["selector"]["matchLabels"],
        kinds["Service"]["spec"]["selector"],
        kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    target = kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", kinds["Deployment"]["metadata"]["name"])


def test_probes_use_the_truthful_ping_and_readiness_fails_within_10_s(mms):
    """nginx's /ping (the supervisor's verdict) is 503 within a second of the last worker's death."""
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert mms[probe]["httpGet"] == {"path": "/ping", "port": "http"}
    startup, ready, live = mms["startupProbe"], mms["readinessProbe"], mms["livenessProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # a cold node pulls and loads
    assert ready["periodSeconds"] * ready["failureThreshold"] + ready["timeoutSeconds"] <= 10
    # liveness outlasts the supervisor's own recovery (5 s grace + an MMS restart; 10-20 s measured)
    assert live["periodSeconds"] * live["failureThreshold"] >= 45


def test_the_pod_runs_as_the_images_non_root_user_on_a_read_only_root(pod, mms):
    [user] = re.findall(r"^USER (\d+):(\d+)$", CONTAINERFILE, re.M)
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (str(security["runAsUser"]), str(security["runAsGroup"])) == user
    container = mms["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_mms_writable_folder_is_an_empty_dir(pod, mms):
    [home] = re.findall(r"SQUEEZENET_HOME=(\S+)", CONTAINERFILE)
    mounts = {mount["mountPath"]: mount["name"] for mount in mms["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    [writable] = [path for path in mounts if Path(home).is_relative_to(path)]
    assert "emptyDir" in volumes[mounts[writable]]


def test_resources_are_sized_from_the_measurements(mms):
    requests, limits = mms["resources"]["requests"], mms["resources"]["limits"]
    assert quantity(requests["cpu"]) <= quantity(limits["cpu"])
    assert quantity(requests["memory"]) <= quantity(limits["memory"])
    assert quantity(requests["memory"]) >= 1.4 * MEASURED_MEMORY_MB * 1e6
    env = {item["name"]: item["value"] for item in mms["env"]}
    # the handler's own rule leaves each worker room for the largest accepted image
    from squeezenet_handler.memory import decode_budget

    workers = int(env["SQUEEZENET_WORKERS"])
    budget = decode_budget(512 << 20, (int(quantity(limits["memory"])), "limit"), (workers, "workers"))
    assert budget.bytes >= LARGEST_DECODE_MB * 1e6, budget
    # One worker per CPU of the limit, sharing the CPUs at run time (no fixed thread count).
    assert int(env["SQUEEZENET_WORKERS"]) == quantity(limits["cpu"]) and "SQUEEZENET_THREADS" not in env


def test_a_drain_keeps_one_pod_and_can_still_evict_one(kinds):
    minimum = kinds["PodDisruptionBudget"]["spec"]["minAvailable"]
    assert minimum >= 1
    assert kinds["HorizontalPodAutoscaler"]["spec"]["minReplicas"] > minimum
    assert kinds["Deployment"]["spec"]["replicas"] > minimum
    strategy = kinds["Deployment"]["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


def test_termination_grace_covers_the_pre_stop_delay_the_drain_and_the_stop(pod, mms):
    pre_stop = mms["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    env = {item["name"]: item["value"] for item in mms["env"]}
    drain, stop = int(env["SQUEEZENET_DRAIN_TIMEOUT"]), 3  # the entrypoint's SQUEEZENET_STOP_TIMEOUT default
    assert pod["spec"]["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + drain + stop


# ---------------------------------------------------------------------------------- Containerfile
def test_the_base_image_is_a_build_argument_defaulting_to_the_official_slim_python():
    assert re.search(r"^ARG BASE_IMAGE=docker\.io/library/python:3\.11-slim-bookworm$", CONTAINERFILE, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", CONTAINERFILE, re.M)


def test_python_packages_come_only_from_the_wheels_in_the_build_context():
    installs = re.findall(r"pip install[^\n]*(?:\\\n[^\n]*)*", CONTAINERFILE)
    assert installs and all("--no-index" in install for install in installs)
    assert "pip check" in CONTAINERFILE


def test_no_certificate_or_remote_file_is_added_to_the_image():
    copies = re.findall(r"^(?:COPY|ADD)\s.*$", CONTAINERFILE, re.M)
    assert copies == ["COPY models/ /opt/squeezenet/models/"]
    assert not re.search(r"\.(?:crt|pem)\b|ssl/certs|REQUESTS_CA_BUNDLE|PIP_CERT", CONTAINERFILE)


def test_the_image_runs_non_root_under_an_init_with_a_healthcheck_and_both_ports_exposed():
    assert re.search(r"^USER 10001:10001$", CONTAINERFILE, re.M)
    assert re.search(r"^EXPOSE 8080 8081 8082$", CONTAINERFILE, re.M)
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[.*\"healthcheck\"\]$", CONTAINERFILE, re.M)
    assert re.search(r'^ENTRYPOINT \["/usr/bin/tini", "-g", "--", .*\]$', CONTAINERFILE, re.M)


def test_podman_is_configured_for_this_kind_of_machine():
    config = tomllib.loads((DEPLOY / "podman" / "containers.conf").read_text())
    assert config["engine"] == {"runtime": "runc", "cgroup_manager": "cgroupfs", "events_logger": "file"}
    assert config["containers"]["default_ulimits"] == ["nofile=20000:20000", "nproc=32768:32768"]


def test_the_makefile_fragment_has_the_image_and_set_up_targets():
    fragment = (DEPLOY / "image.mk").read_text()
    for target in ("container-setup", "image", "image-generic", "image-measure"):
        assert re.search(rf"^{target}:", fragment, re.M), target
    assert "squeezenet-mms:latest" in fragment
