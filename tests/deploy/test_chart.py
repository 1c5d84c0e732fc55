"""The Helm chart, rendered by Helm's own engine (helm-python-sdk), linted, and every
manifest validated strictly against a pinned Kubernetes version; then the structure that
keeps a deployment safe: the migration hook and its ordering, probes on every long-running
container, beat as a singleton, no secret in any manifest, non-root read-only pods."""

from __future__ import annotations

import re
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import promql_parser
import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "integrations-hub"
PRODUCTION = CHART / "ci" / "production-values.yaml"
KUBERNETES = "1.33.0"
WORKLOADS = ("Deployment", "Job", "CronJob")
# what the other engineer's /metrics exports (names agreed in the issue)
METRICS = {
    "hub_http_request_duration_seconds", "hub_webhooks_received_total", "hub_webhooks_rejected_total",
    "hub_webhook_dispatch_lag_seconds", "hub_outbox_depth", "hub_outbox_oldest_due_age_seconds",
    "hub_deliveries_total", "hub_provider_call_duration_seconds", "hub_provider_errors_total", "hub_dead_letters",
    "hub_token_refresh_total", "hub_calendar_channels_expiring", "hub_calendar_sync_lag_seconds", "hub_queue_depth",
    "hub_backup_last_success_timestamp_seconds",
}


def production_values() -> dict:
    return helm.values_from_yaml(PRODUCTION.read_text())


def render(values: dict, *, upgrade: bool = False) -> list[dict]:
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name="hub", namespace="clinics", is_install=not upgrade, is_upgrade=upgrade)
    return [doc for name, text in sorted(rendered.items()) if not name.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def renders() -> dict[str, list[dict]]:
    """Rendered once per module: the defaults, and the production values on install and on upgrade."""
    return {"default": render({}), "production": render(production_values()),
            "production-upgrade": render(production_values(), upgrade=True)}


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict], kind: str, suffix: str) -> dict:
    (doc,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(suffix)]
    return doc


def pod_spec(doc: dict) -> dict:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def containers(doc: dict, *, init: bool = True) -> list[dict]:
    spec = pod_spec(doc)
    return [*(spec.get("initContainers", []) if init else []), *spec["containers"]]


# --- Helm and Kubernetes agree it is valid ------------------------------------------


@pytest.mark.parametrize("values", [{}, "production"])
def test_lint_is_clean(values):
    report = helm.lint(CHART, production_values() if values == "production" else values, strict=True,
                       kube_version=f"v{KUBERNETES}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("which", ["default", "production", "production-upgrade"])
def test_every_manifest_is_valid_kubernetes(renders, which):
    custom = []
    for doc in renders[which]:
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            custom.append(doc["kind"])
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc.message}")
    # only the Prometheus Operator's kinds have no built-in schema; they are checked below
    assert set(custom) <= {"ServiceMonitor", "PrometheusRule"}
    assert len(renders[which]) > 10


def test_the_production_values_turn_everything_on(renders):
    kinds = {d["kind"] for d in renders["production"]}
    assert {"Deployment", "Job", "CronJob", "Service", "Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "NetworkPolicy", "ServiceMonitor", "PrometheusRule", "ServiceAccount"} <= kinds
    ingress = by_kind(renders["production"], "Ingress")[0]
    assert ingress["spec"]["tls"] == [{"secretName": "hub-example-com-tls", "hosts": ["hub.example.com"]}]


# --- the migration hook ---------------------------------------------------------------


def test_migration_runs_as_a_pre_install_pre_upgrade_hook(renders):
    job = named(renders["default"], "Job", "-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(annotations["helm.sh/hook-weight"]) == 0
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    (migrate,) = containers(job)
    assert migrate["args"] == ["migrate"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    # no other object of the release is a hook: they are all applied after the migration
    hooks = [d for d in renders["production"] if "helm.sh/hook" in d["metadata"].get("annotations", {})]
    assert [h["metadata"]["name"] for h in hooks] == ["hub-integrations-hub-migrate"]


@pytest.mark.parametrize("which", ["default", "production", "production-upgrade"])
def test_the_hook_needs_nothing_the_release_creates(renders, which):
    """A pre-install hook runs before the release's objects exist: it may use the
    pre-existing Secret, but no ConfigMap, ServiceAccount or PVC the chart creates."""
    docs = renders[which]
    job = named(docs, "Job", "-migrate")
    created = {(d["kind"], d["metadata"]["name"]) for d in docs if d is not job}
    spec = pod_spec(job)
    assert ("ServiceAccount", spec.get("serviceAccountName")) not in created
    for volume in spec["volumes"]:
        if "persistentVolumeClaim" in volume:
            assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) not in created
        assert "configMap" not in volume
    for container in containers(job):
        assert "envFrom" not in container
        for env in container["env"]:
            assert "configMapKeyRef" not in env.get("valueFrom", {})


def test_a_backup_runs_before_migrating_on_upgrades_only(renders):
    install = named(renders["production"], "Job", "-migrate")
    upgrade = named(renders["production-upgrade"], "Job", "-migrate")
    assert "initContainers" not in pod_spec(install)  # a first install has nothing to back up
    (backup,) = pod_spec(upgrade)["initContainers"]
    assert backup["args"] == ["backup", "create"]
    assert {"name": "HUB_BACKUP_DIR", "value": "/backups"} in backup["env"]
    claim = [v for v in pod_spec(upgrade)["volumes"] if v["name"] == "backups"][0]["persistentVolumeClaim"]
    assert claim == {"claimName": "hub-backups"}


@pytest.mark.parametrize("which", ["default", "production"])
def test_pods_wait_for_the_schema(renders, which):
    for deployment in by_kind(renders[which], "Deployment"):
        (wait,) = pod_spec(deployment)["initContainers"]
        assert wait["args"] == ["migrate", "--check"], deployment["metadata"]["name"]


# --- probes, beat, scaling --------------------------------------------------------------


@pytest.mark.parametrize("which", ["default", "production"])
def test_every_long_running_container_has_liveness_and_readiness(renders, which):
    deployments = by_kind(renders[which], "Deployment")
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments} == \
        {"api", "relay", "worker", "beat"}
    for deployment in deployments:
        for container in containers(deployment, init=False):
            assert "livenessProbe" in container and "readinessProbe" in container, deployment["metadata"]["name"]
            if container["name"] == "api":
                assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
                assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
                assert container["readinessProbe"]["httpGet"]["port"] == "http"
                continue
            # relay, worker, beat: the heartbeat file their loop touches (tests/test_heartbeat.py)
            env = {e["name"]: e.get("value") for e in container["env"]}
            command = container["livenessProbe"]["exec"]["command"]
            assert command[:3] == ["python", "-m", "hub.heartbeat"]
            assert command[3] == env["HUB_HEARTBEAT_FILE"] and command[3].startswith("/tmp/")
            assert int(command[4]) >= 15
            assert container["readinessProbe"]["exec"]["command"] == command


def test_beat_is_a_singleton(renders):
    for which in ("default", "production"):
        beat = named(renders[which], "Deployment", "-beat")
        assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"] == {"type": "Recreate"}
        targets = {h["spec"]["scaleTargetRef"]["name"] for h in by_kind(renders[which], "HorizontalPodAutoscaler")}
        assert beat["metadata"]["name"] not in targets
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema({"beat": {"enabled": True, "replicas": 2}})


def test_worker_groups_consume_the_queues_they_name_and_scale(renders):
    docs = renders["production"]
    queues = {d["metadata"]["name"]: {e["name"]: e.get("value") for e in containers(d, init=False)[0]["env"]}
              ["HUB_WORKER_QUEUES"] for d in by_kind(docs, "Deployment") if "-worker-" in d["metadata"]["name"]}
    assert queues == {"hub-integrations-hub-worker-deliveries": "hub",
                      "hub-integrations-hub-worker-background": "calendar,maintenance"}
    from hub.queue import QUEUES

    assert {q for value in queues.values() for q in value.split(",")} == set(QUEUES)
    targets = {h["spec"]["scaleTargetRef"]["name"] for h in by_kind(docs, "HorizontalPodAutoscaler")}
    assert targets == {"hub-integrations-hub-api", "hub-integrations-hub-worker-deliveries"}
    background = named(docs, "Deployment", "-worker-background")
    assert background["spec"]["replicas"] == 2  # no HPA: the replicas are the chart's


@pytest.mark.parametrize("which", ["default", "production"])
def test_every_selector_selects_pods_and_budgets_leave_room_to_drain(renders, which):
    docs = renders[which]
    pods = [(d, d["spec"]["template"]["metadata"]["labels"]) for d in by_kind(docs, "Deployment")]
    floors = {d["metadata"]["name"]: d["spec"].get("replicas") for d, _ in pods}
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        floors[hpa["spec"]["scaleTargetRef"]["name"]] = hpa["spec"]["minReplicas"]

    def selected(selector: dict) -> list[str]:
        return [d["metadata"]["name"] for d, labels in pods if selector.items() <= labels.items()]

    for pdb in by_kind(docs, "PodDisruptionBudget"):
        (target,) = selected(pdb["spec"]["selector"]["matchLabels"])
        assert pdb["spec"]["minAvailable"] < floors[target], pdb["metadata"]["name"]
    service = by_kind(docs, "Service")[0]
    assert selected(service["spec"]["selector"]) == ["hub-integrations-hub-api"]
    (policy,) = by_kind(docs, "NetworkPolicy")
    assert len(selected(policy["spec"]["podSelector"]["matchLabels"])) == len(pods)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_pdb_that_would_block_every_drain_is_refused():
    values = production_values()
    values["relay"]["pdb"]["minAvailable"] = values["relay"]["replicas"]
    with pytest.raises(helm.HelmError, match="relay.pdb.minAvailable"):
        render(values)
    values = production_values()
    values["workers"] = [values["workers"][0]]  # nobody consumes calendar or maintenance
    with pytest.raises(helm.HelmError, match="calendar"):
        render(values)


# --- secrets and settings -------------------------------------------------------------

SECRET_SETTINGS = ("HUB_MASTER_KEYS", "HUB_DATABASE_URL", "HUB_REDIS_URL", "HUB_TWILIO_AUTH_TOKEN",
                   "HUB_GOOGLE_CLIENT_SECRET", "HUB_SMTP_URL", "HUB_STRIPE_SECRET_KEY")


@pytest.mark.parametrize("which", ["default", "production", "production-upgrade"])
def test_no_secret_value_in_any_manifest(renders, which):
    docs = renders[which]
    assert by_kind(docs, "Secret") == [] and by_kind(docs, "ConfigMap") == []
    secret_name = "hub-production" if which.startswith("production") else "integrations-hub-secrets"
    for doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        for container in containers(doc):
            env = {e["name"]: e for e in container["env"]}
            for name in SECRET_SETTINGS:
                if name in env:
                    assert "value" not in env[name], f"{name} rendered in clear"
                    assert env[name]["valueFrom"]["secretKeyRef"]["name"] == secret_name
            assert {"HUB_MASTER_KEYS", "HUB_DATABASE_URL", "HUB_REDIS_URL"} <= env.keys()
    text = yaml.safe_dump_all(docs)
    assert not re.search(r"://[^/\s:@]+:[^@\s/]+@", text), "a URL with a password was rendered"
    assert not re.search(r"[0-9a-f]{12}:[A-Za-z0-9_-]{43}", text), "a master key entry was rendered"


@pytest.mark.parametrize("setting", ["HUB_MASTER_KEYS", "HUB_DATABASE_URL", "HUB_SMTP_URL"])
def test_schema_refuses_a_secret_in_plain_values(setting):
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema({"config": {setting: "postgresql+psycopg://hub:s3cret@db/hub"}})
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema({"secrets": {"existingSecret": "x", "env": {
            "HUB_MASTER_KEYS": {"key": "k", "value": "abc"}, "HUB_DATABASE_URL": {"key": "d"},
            "HUB_REDIS_URL": {"key": "r"}}}})


@pytest.mark.parametrize("bad", [
    {"api": {"replicas": "three", "port": 8000}},
    {"workers": [{"name": "w", "queues": ["hub", "reports"], "replicas": 1, "concurrency": 2, "pool": "prefork"}]},
    {"securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False}},
    {"podSecurityContext": {"runAsNonRoot": False, "runAsUser": 0}},
    {"publicUrl": "hub.example.com"},
    {"trustedProxies": ["the ingress"]},
    {"secrets": {"existingSecret": "", "env": {}}},
    {"backup": {"enabled": True, "schedule": "every night"}},
    {"replicaCount": 3},
])
def test_schema_refuses_bad_values(bad):
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema({})  # the defaults pass
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(bad)
        with pytest.raises(helm.HelmError):
            chart.render(bad, name="hub", namespace="clinics")


def test_settings_come_from_values(renders):
    api = named(renders["production"], "Deployment", "-api")
    env = {e["name"]: e.get("value") for e in containers(api, init=False)[0]["env"]}
    assert env["HUB_TRUSTED_PROXIES"] == "10.42.0.0/16"
    assert env["HUB_PUBLIC_URL"] == "https://hub.example.com"
    assert env["HUB_ENV"] == "production" and env["HUB_DELIVERY_MAX_ATTEMPTS"] == "6"
    from hub.settings import Settings

    # every plain setting the chart renders is one the hub reads (a typo would be ignored silently)
    # (and prometheus-client's own multi-process setting)
    known = {f"HUB_{name.upper()}" for name in Settings.model_fields} | {"HUB_TRUSTED_PROXIES",
                                                                        "PROMETHEUS_MULTIPROC_DIR"}
    for doc in renders["production-upgrade"]:
        if doc["kind"] in WORKLOADS:
            for container in containers(doc):
                assert {e["name"] for e in container["env"]} <= known, container["name"]


# --- security contexts ----------------------------------------------------------------


@pytest.mark.parametrize("which", ["default", "production-upgrade"])
def test_pods_run_as_non_root_on_a_read_only_root(renders, which):
    workloads = [d for d in renders[which] if d["kind"] in WORKLOADS]
    assert len(workloads) >= 5
    for doc in workloads:
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
        assert spec["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in containers(doc):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
            # the paths the hub writes: temp files and heartbeat, HUB_VAR_DIR (beat's schedule)
            assert "emptyDir" in mounts["/tmp"] and "emptyDir" in mounts["/var/lib/hub"]
            assert "resources" in container and container["resources"]["requests"]


# --- monitoring -----------------------------------------------------------------------


def selectors(expr) -> set[str]:
    names = set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)
        for attr in ("expr", "lhs", "rhs", "vector_selector", "param"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, str | int | float):
                visit(child)
        for arg in getattr(node, "args", None) or []:
            visit(arg)

    visit(expr)
    return names


def test_alerts_parse_use_the_agreed_metrics_and_carry_runbooks(renders):
    (rule,) = by_kind(renders["production"], "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert {"HubDeadLettersGrowing", "HubOutboxLagging", "HubWebhookRejectionSpike", "HubProviderErrorRate",
            "HubTokenRefreshFailures", "HubCalendarChannelsExpiring", "HubBackupTooOld"} <= alerts.keys()
    used = set()
    for name, alert in alerts.items():
        names = selectors(promql_parser.parse(alert["expr"]))
        base = {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}
        assert base <= METRICS, f"{name} uses {base - METRICS}"
        used |= base
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}
        assert len(alert["annotations"]["runbook"]) > 100 and alert["annotations"]["summary"]
        assert re.fullmatch(r"[0-9]+[smh]", alert["for"])
    assert "hub_backup_last_success_timestamp_seconds" in used and "hub_token_refresh_total" in used
    (monitor,) = by_kind(renders["production"], "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "api"


def test_several_api_processes_share_their_counters(renders):
    """api.processes > 1: prometheus-client's multi-process mode, in a directory of the pod's own."""
    for which, expected in (("default", None), ("production", "/tmp/prometheus-multiproc")):
        (api,) = [c for c in containers(named(renders[which], "Deployment", "-api"), init=False) if c["name"] == "api"]
        env = {e["name"]: e.get("value") for e in api.get("env", [])}
        assert env.get("PROMETHEUS_MULTIPROC_DIR") == expected, which


def test_notes_tell_the_next_steps():
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(production_values(), name="hub", namespace="clinics")
    notes = rendered["integrations-hub/templates/NOTES.txt"]
    assert "hub admin create-client --platform" in notes and "https://hub.example.com/health/ready" in notes
