"""deploy/ is checked like code: the Kubernetes manifests by `kubernetes-validate --strict`, KEDA's
resources (which it has no schema for) against KEDA's own published CRD schemas (vendored in
tests/data/keda), the compose file by `docker-compose config` (Debian's docker-compose, no daemon
needed; `make test` installs it as root), and the Kafka settings of deploy/ against what the code
and the Kafka test tiers (tests/kafka_cluster.py) use."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema_rs
import pytest
import yaml

from runtime.service import load_service
from runtime.config import SERVICES, Settings
from runtime.consumer import ConsumerLoop
from runtime.relay import producer_conf

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))
KEDA_CRDS = ROOT / "tests" / "data" / "keda"
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES_VALIDATE = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent)) \
    or shutil.which("kubernetes-validate")
DOCKER_COMPOSE = shutil.which("docker-compose")
needs_compose = pytest.mark.skipif(DOCKER_COMPOSE is None, reason="docker-compose not on PATH: install Debian's "
                                                                  "`docker-compose` package (`make test` does, as root)")
# cart and web consume nothing (their services have no handlers)
CONSUMERS = [s for s in SERVICES if load_service(s).handlers]
#: what KEDA's kafka scaler reads from a trigger's metadata (kedacore/keda pkg/scalers/kafka_scaler.go,
#: fields with order=triggerMetadata; "resolvedEnv" ones may also be given as <name>FromEnv)
KAFKA_TRIGGER_KEYS = {"bootstrapServers", "consumerGroup", "topic", "partitionLimitation", "lagThreshold",
                      "activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers", "excludePersistentLag",
                      "scaleToZeroOnInvalidOffset", "limitToPartitionsWithLag",
                      "ensureEvenDistributionOfPartitions", "fullMetadata", "version", "tls", "unsafeSsl", "sasl",
                      "saslTokenProvider", "awsRegion"}
KAFKA_TRIGGER_KEYS |= {f"{k}FromEnv" for k in ("bootstrapServers", "consumerGroup", "topic")}


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def all_docs() -> list[dict]:
    return [d for path in K8S for d in docs(path)]


def of_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in all_docs() if d["kind"] == kind}


def properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


# --- Kubernetes -------------------------------------------------------------------------------

def kubernetes_validate(*paths: Path) -> subprocess.CompletedProcess:
    assert KUBERNETES_VALIDATE, "kubernetes-validate is a test dependency (pyproject.toml [test])"
    return subprocess.run([KUBERNETES_VALIDATE, "--strict", "--quiet", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


def test_kubernetes_validate_strict_passes_every_manifest():
    result = kubernetes_validate(*K8S)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout + result.stderr


def test_kubernetes_validate_strict_refuses_an_unknown_field(tmp_path):
    bad = yaml.safe_load_all((DEPLOY / "k8s" / "payments.yaml").read_text())
    deployment = next(bad)
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"path": "/readyz"}  # misspelt
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(deployment))
    result = kubernetes_validate(tmp_path / "bad.yaml")
    assert result.returncode != 0 and "readinesProbe" in result.stdout + result.stderr


def _strict(schema):
    """KEDA's schema as kubernetes-validate --strict treats the built-in ones: an object with
    declared properties takes no others (the API server would prune them silently)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def keda_validator(kind: str):
    crd = yaml.safe_load((KEDA_CRDS / f"keda.sh_{kind.lower()}s.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    return jsonschema_rs.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))


def keda_errors(doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in keda_validator(doc["kind"]).iter_errors(doc)]


def test_keda_resources_validate_against_kedas_crd_schema():
    keda = [d for d in all_docs() if d["apiVersion"].startswith("keda.sh/")]
    assert {d["kind"] for d in keda} == {"ScaledObject", "TriggerAuthentication"}
    for doc in keda:
        assert not keda_errors(doc), (doc["metadata"]["name"], keda_errors(doc))


def test_the_keda_schema_check_refuses_an_unknown_field_and_a_wrong_type():
    scaled = dict(of_kind("ScaledObject")["salesbus-payments"])
    assert keda_errors({**scaled, "spec": {**scaled["spec"], "minReplicas": 2}})          # not KEDA's name
    assert keda_errors({**scaled, "spec": {**scaled["spec"], "maxReplicaCount": "12"}})   # not an integer


def test_every_consumer_scales_on_its_own_groups_kafka_lag_up_to_the_partition_count():
    scaled = of_kind("ScaledObject")
    deployments = of_kind("Deployment")
    auths = of_kind("TriggerAuthentication")
    partitions = Settings().topic_partitions
    assert {so["spec"]["scaleTargetRef"]["name"] for so in scaled.values()} == {f"salesbus-{s}" for s in CONSUMERS}
    for so in scaled.values():
        target = so["spec"]["scaleTargetRef"]["name"]
        service = target.removeprefix("salesbus-")
        assert target in deployments and "replicas" not in deployments[target]["spec"], \
            f"{target}: the ScaledObject owns the replica count"
        assert so["spec"]["maxReplicaCount"] == partitions, "more members than partitions sit idle"
        assert so["spec"]["minReplicaCount"] >= 2
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "kafka" and trigger["authenticationRef"]["name"] in auths
        meta = trigger["metadata"]
        assert set(meta) <= KAFKA_TRIGGER_KEYS, set(meta) - KAFKA_TRIGGER_KEYS
        # the group the service's consumer joins (runtime/consumer.py: group.id = service name)
        assert meta["consumerGroup"] == service
        assert meta["bootstrapServersFromEnv"] == "SALESBUS_KAFKA_BOOTSTRAP"
        assert int(meta["lagThreshold"]) == Settings().batch_size
        assert meta["offsetResetPolicy"] == ConsumerLoop("x", {}, None, None, {}).conf["auto.offset.reset"]


def test_every_replicated_deployment_has_a_disruption_budget_on_its_pods():
    budgets = of_kind("PodDisruptionBudget")
    for name, dep in of_kind("Deployment").items():
        if dep["spec"].get("replicas") == 1:
            assert name not in budgets, f"{name}: a budget on one replica blocks every drain"
            continue
        assert name in budgets, f"{name} has no PodDisruptionBudget"
        assert budgets[name]["spec"]["selector"] == dep["spec"]["selector"]
        assert budgets[name]["spec"]["maxUnavailable"] == 1


def test_every_service_is_deployed_with_the_shared_settings_and_listening_beyond_loopback():
    deployments = of_kind("Deployment")
    assert set(deployments) == {f"salesbus-{s}" for s in (*SERVICES, "analytics")}
    for dep in deployments.values():
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        assert {"configMapRef": {"name": "salesbus-config"}} in container["envFrom"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert of_kind("ConfigMap")["salesbus-config"]["data"]["SALESBUS_BIND_HOST"] == "0.0.0.0"


def settings_names() -> set[str]:
    return {f"SALESBUS_{name.upper()}" for name in Settings.model_fields}


def env_example() -> dict[str, str]:
    return properties(DEPLOY / "salesbus.env.example")


def test_every_setting_in_deploy_is_a_settings_field_and_they_agree():
    config = of_kind("ConfigMap")["salesbus-config"]["data"]
    per_service_db = {f"SALESBUS_{s.upper()}_DATABASE_URL" for s in SERVICES}
    # read from the environment by the key ring itself, not a Settings field
    assert 'os.environ.get("SALESBUS_API_KEYS_FILE")' in (ROOT / "runtime" / "auth.py").read_text()
    per_service_db.add("SALESBUS_API_KEYS_FILE")
    for source, names in (("k8s ConfigMap", config), ("salesbus.env.example", env_example()),
                          ("compose.yaml", compose_raw()["x-salesbus-env"])):
        unknown = set(names) - settings_names() - per_service_db
        assert not unknown, f"{source}: {unknown} are not Settings fields (runtime/config.py)"
    for key, value in config.items():
        assert env_example().get(key, value) == value, key
        assert str(compose_raw()["x-salesbus-env"].get(key, value)) == value, key
    assert int(config["SALESBUS_KAFKA_SESSION_TIMEOUT_MS"]) == Settings().kafka_session_timeout_ms
    assert int(config["SALESBUS_TOPIC_PARTITIONS"]) == Settings().topic_partitions


# --- Kafka settings: what the tests proved --------------------------------------------------------

def fault_tier_cluster() -> tuple[object, dict[str, str]]:
    """The fault tier's three-broker cluster and one node's server.properties (nothing started)."""
    from tests.kafka_cluster import KafkaCluster, KafkaNode
    cluster = KafkaCluster(brokers=3, data_dir=Path("/nonexistent"))
    node = KafkaNode(1, 9092, 9093, Path("/nonexistent/node1"), Path("/nonexistent/libs"))
    text = cluster.properties(node, "1@127.0.0.1:9093")
    return cluster, dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_broker_settings_are_the_ones_the_fault_tier_ran_with():
    cluster, tested = fault_tier_cluster()
    deploy = properties(DEPLOY / "kafka" / "server.properties")
    assert deploy["min.insync.replicas"] == str(cluster.min_isr) == "2"
    assert deploy["default.replication.factor"] == str(cluster.replication) == "3"
    for key, value in deploy.items():
        if key in tested:
            assert tested[key] == value, f"{key}: deploy says {value}, the fault tier ran with {tested[key]}"
    untested = set(deploy) - set(tested)
    # stated, not tested: Kafka's own default, which the services' retention bounds are set against
    assert untested == {"log.retention.hours"}, untested


def test_topic_settings_agree_with_the_code_the_brokers_and_the_bounds_set_against_them(monkeypatch):
    topics = yaml.safe_load((DEPLOY / "kafka" / "topics.yaml").read_text())
    broker = properties(DEPLOY / "kafka" / "server.properties")
    cfg, config = Settings(), of_kind("ConfigMap")["salesbus-config"]["data"]
    business, dead = topics["business"], topics["dead_letters"]
    assert business["partitions"] == cfg.topic_partitions == int(config["SALESBUS_TOPIC_PARTITIONS"])
    for t in (business, dead):
        assert t["replication.factor"] == int(config["SALESBUS_TOPIC_REPLICATION"]) == fault_tier_cluster()[0].replication
        assert t["config"]["min.insync.replicas"] == int(broker["min.insync.replicas"])
    # the business topics' retention is the brokers' default, and the services' bounds outlast it
    retention_ms = business["config"]["retention.ms"]
    assert retention_ms == int(broker["log.retention.hours"]) * 3600 * 1000
    assert cfg.inbox_retention_s * 1000 >= retention_ms, "a redelivery older than the inbox would be handled twice"
    assert cfg.parked_event_expiry_s * 1000 >= retention_ms
    assert dead["config"]["retention.ms"] >= retention_ms
    assert f"retention.ms={dead['config']['retention.ms']}" in " ".join(compose_raw()["services"]["topic-config"]
                                                                           ["command"])

    # what the services create: `partitions` for business topics, 1 for dead-letter topics
    import runtime.topics as topics_module
    created = []

    class Admin:
        def __init__(self, conf):
            pass

        def list_topics(self, timeout):
            return type("Meta", (), {"topics": {}})()

        def create_topics(self, new, operation_timeout):
            created.extend(new)
            return {}
    monkeypatch.setattr(topics_module, "AdminClient", Admin)
    topics_module.ensure_topics({}, cfg.topic_partitions, 3)
    counts = {t.topic: t.num_partitions for t in created}
    assert {n for t, n in counts.items() if t.endswith(".DLQ")} == {dead["partitions"]}
    assert {n for t, n in counts.items() if not t.endswith(".DLQ")} == {business["partitions"]}


def test_client_settings_say_what_the_code_does():
    stated = properties(DEPLOY / "kafka" / "clients.properties")
    producer = {k.removeprefix("producer."): v for k, v in stated.items() if k.startswith("producer.")}
    consumer = {k.removeprefix("consumer."): v for k, v in stated.items() if k.startswith("consumer.")}

    def text(v):
        return str(v).lower() if isinstance(v, bool) else str(v)
    assert producer == {k: text(v) for k, v in producer_conf({}).items()}
    code = ConsumerLoop("x", {}, None, None, {}, session_timeout_ms=Settings().kafka_session_timeout_ms,
                        fetch_wait_max_ms=Settings().kafka_fetch_wait_max_ms).conf
    assert consumer == {k: text(v) for k, v in code.items() if k != "group.id"}


# --- compose ------------------------------------------------------------------------------------

def compose_raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def docker_compose_config(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([DOCKER_COMPOSE, "-f", str(path), "config", *args], capture_output=True, text=True,
                          timeout=120, cwd=path.parent)


@needs_compose
def test_docker_compose_config_accepts_the_compose_file():
    result = docker_compose_config(COMPOSE, "-q")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_compose
def test_docker_compose_config_refuses_a_broken_copy(tmp_path):
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    copy = tmp_path / "deploy" / "compose.yaml"
    assert docker_compose_config(copy, "-q").returncode == 0       # the copy itself is fine
    broken = compose_raw()
    del broken["services"]["topics"]                               # what every service waits for
    copy.write_text(yaml.safe_dump(broken))
    assert docker_compose_config(copy, "-q").returncode != 0


@needs_compose
def test_compose_runs_kafka_kraft_with_the_tested_settings_postgres_and_every_service():
    result = docker_compose_config(COMPOSE)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    brokers = {n: s for n, s in services.items() if s.get("image", "").startswith("apache/kafka:") and n != "topic-config"}
    assert len(brokers) == 3
    server = properties(DEPLOY / "kafka" / "server.properties")
    for name, broker in brokers.items():
        env = broker["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"     # KRaft, no ZooKeeper
        as_properties = {k.removeprefix("KAFKA_").lower().replace("_", "."): str(v) for k, v in env.items()
                         if k.startswith("KAFKA_")}
        for key, value in server.items():
            assert as_properties.get(key) == value, f"{name}: {key}"
    assert services["postgres"]["image"].startswith("postgres:")
    for name in SERVICES:
        assert services[name]["command"] == [name] and services[name]["image"] == "salesbus:latest"
    assert services["analytics"]["entrypoint"] == ["python", "-m", "services.analytics"]
    bootstrap = services["cart"]["environment"]["SALESBUS_KAFKA_BOOTSTRAP"].split(",")
    assert sorted(b.split(":")[0] for b in bootstrap) == sorted(brokers)


def test_analytics_changelogs_get_the_topics_replication(monkeypatch):
    """faust creates its changelog topics itself, with its own replication setting (default 1):
    under min.insync.replicas=2 its acks=all writes would all be refused. deploy/ sets it, by the
    environment variable faust really reads."""
    replication = of_kind("ConfigMap")["salesbus-config"]["data"]["SALESBUS_TOPIC_REPLICATION"]
    (container,) = of_kind("Deployment")["salesbus-analytics"]["spec"]["template"]["spec"]["containers"]
    k8s_env = {e["name"]: e["value"] for e in container.get("env", [])}
    compose_env = compose_raw()["services"]["analytics"]["environment"]
    assert k8s_env["TOPIC_REPLICATION_FACTOR"] == str(compose_env["TOPIC_REPLICATION_FACTOR"]) == replication
    import faust
    monkeypatch.setenv("TOPIC_REPLICATION_FACTOR", replication)
    app = faust.App("deploy-check", broker="kafka://127.0.0.1:1", autodiscover=False)
    assert app.conf.topic_replication_factor == int(replication)
    assert app.conf.producer_acks == -1   # why it matters: faust writes with acks=all
