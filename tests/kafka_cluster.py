"""Apache Kafka (KRaft) for the Kafka test tiers: fetched once with Maven, started on loopback.

    cluster = KafkaCluster(brokers=1).start()     # the ordinary Kafka tier
    cluster = KafkaCluster(brokers=3).start()     # the fault tier: RF 3, min.insync.replicas=2
    cluster.bootstrap                             # "127.0.0.1:p1,127.0.0.1:p2,..."
    cluster.node(2).kill() / .stop() / .start() / .pause() / .resume()
    cluster.stop()

Every node is a combined controller+broker (`process.roles=broker,controller`) with a static
quorum of all nodes, running `java -cp 'libs/*' kafka.Kafka server.properties`. The jars come from
Maven Central through `tests/kafka/pom.xml` (`mvn dependency:copy-dependencies`) into
`build/kafka/<version>/libs` (ignored by git), once per machine; `python -m tests.kafka_cluster`
fetches them and prints the version.

No orphans: every JVM runs in its own process group and is told by the kernel to die with the
process that started it (PR_SET_PDEATHSIG, as the embedded Tansu broker is, but with SIGKILL so
a broker stopped with SIGSTOP dies too); `stop()` also runs at exit. The kernel ties that signal
to the *thread* that started the JVM: start and restart nodes from a thread that outlives them
(the test's own thread), never from a short-lived helper thread.
"""
from __future__ import annotations

import atexit
import base64
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from runtime.embedded import StackError, _die_with_parent, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "tests" / "kafka" / "pom.xml"
#: the Apache Kafka release the tiers run against (org.apache.kafka:kafka_2.13 on Maven Central)
KAFKA_VERSION = os.environ.get("SALESBUS_KAFKA_VERSION", "4.1.1")
CACHE = ROOT / "build" / "kafka"
#: small heaps: two shared cores, three brokers beside PostgreSQL and the services
JVM_OPTS = ["-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k",
            "-Djava.awt.headless=true", "-Dfile.encoding=UTF-8"]
#: JVM start-up on two busy cores is slow; a broker gets this long to answer
START_TIMEOUT_S = float(os.environ.get("SALESBUS_KAFKA_START_TIMEOUT_S", "180"))


def available() -> str | None:
    """None when java and mvn are on PATH, else why the Kafka tiers cannot run."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not on PATH" if missing else None


def kafka_libs(version: str = KAFKA_VERSION, *, quiet: bool = True) -> Path:
    """The folder of broker jars for `version`, fetched with Maven on first use (a lock keeps
    concurrent sessions from fetching twice; a half-finished fetch is never used)."""
    libs = CACHE / version / "libs"
    done = libs / ".complete"
    if done.exists():
        return libs
    why = available()
    if why:
        raise StackError(f"Apache Kafka {version} is not fetched and cannot be: {why}")
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return libs
        partial_dir = CACHE / version / "libs.partial"
        shutil.rmtree(partial_dir, ignore_errors=True)
        cmd = ["mvn", "-B", *(["-q"] if quiet else []), "-f", str(POM), f"-Dkafka.version={version}",
               "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={partial_dir}"]
        started = time.monotonic()
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(f"fetching Apache Kafka {version} failed ({' '.join(cmd)}):\n"
                             f"{(result.stdout + result.stderr)[-4000:]}")
        if not (partial_dir / f"kafka_2.13-{version}.jar").exists():
            raise StackError(f"Maven fetched no kafka_2.13-{version}.jar into {partial_dir}")
        shutil.rmtree(libs, ignore_errors=True)
        partial_dir.rename(libs)
        done.write_text(f"fetched in {time.monotonic() - started:.1f}s\n")
    return libs


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, base64url without padding (what `kafka-storage
    random-uuid` prints; Kafka's own generator also avoids a leading '-')."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _sweep_stale() -> None:
    """Remove the data folders of clusters whose test process was killed (its JVMs died with it)."""
    for folder in Path(tempfile.gettempdir()).glob("salesbus-kafka-*"):
        try:
            owner = int((folder / "owner.pid").read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):
            pass  # just being created, or not ours to judge


LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


@dataclass
class KafkaNode:
    """One combined controller+broker: its ports, folder and (while running) JVM."""
    node_id: int
    port: int
    controller_port: int
    home: Path
    libs: Path
    proc: subprocess.Popen | None = None
    _log: object = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.home / "server.properties"

    @property
    def log_path(self) -> Path:
        return self.home / "broker.log"

    def _java(self, main: str, *args: str) -> list[str]:
        return ["java", *JVM_OPTS, f"-Dlog4j2.configurationFile={self.home.parent / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={self.home / 'logs'}", "-cp", f"{self.libs}/*", main, *args]

    def format(self, cluster_id: str) -> subprocess.Popen:
        """`kafka-storage format` for this node (static quorum: no --standalone needed)."""
        return subprocess.Popen(self._java("kafka.tools.StorageTool", "format", "-t", cluster_id,
                                           "-c", str(self.config)),
                                stdout=open(self.home / "format.log", "ab"), stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=partial(_die_with_parent, signal.SIGKILL))

    def start(self) -> "KafkaNode":
        """Start the JVM (again, after stop/kill: same folder, same data)."""
        if self.running:
            return self
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self._java("kafka.Kafka", str(self.config)), stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=partial(_die_with_parent, signal.SIGKILL))
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_listening(self, timeout: float = START_TIMEOUT_S) -> None:
        try:
            wait_for_port(self.port, timeout, f"Kafka node {self.node_id} (log {self.log_path})", self.proc)
        except StackError as exc:
            raise StackError(f"{exc}\n--- last lines of {self.log_path} ---\n{self.tail()}") from None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """kill -9: no controlled shutdown, the others find out by timeouts."""
        if self.running:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._reap(30)

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM: a controlled shutdown (leaders move away first); SIGKILL if it takes too long."""
        if self.running:
            os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._reap(30)

    def pause(self) -> None:
        """SIGSTOP: the node is cut off (connections stay open, nothing answers)."""
        if self.running:
            os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.running:
            os.killpg(self.proc.pid, signal.SIGCONT)

    def _reap(self, timeout: float) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None


class KafkaCluster:
    """`brokers` combined controller+broker nodes on loopback. With three: replication factor 3
    and min.insync.replicas=2 for every topic (internal ones too), so acks=all still succeeds
    with one node down."""

    def __init__(self, brokers: int = 1, *, version: str = KAFKA_VERSION, data_dir: Path | None = None):
        self.version = version
        self.size = brokers
        self.replication = min(3, brokers)
        self.min_isr = 2 if brokers >= 3 else 1
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="salesbus-kafka-"))
        self._own_dir = data_dir is None
        self.nodes: list[KafkaNode] = []
        self.started_in_s: float | None = None
        self._stopped = False

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def properties(self, node: KafkaNode, voters: str) -> str:
        rf, isr = self.replication, self.min_isr
        return "\n".join([
            "process.roles=broker,controller",
            f"node.id={node.node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={node.home / 'data'}",
            f"default.replication.factor={rf}",
            f"min.insync.replicas={isr}",
            f"offsets.topic.replication.factor={rf}",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={isr}",
            f"share.coordinator.state.topic.replication.factor={rf}",
            f"share.coordinator.state.topic.min.isr={isr}",
            "unclean.leader.election.enable=false",
            # fewer internal partitions than the default 50: quicker first group join on 2 cores
            "offsets.topic.num.partitions=12",
            "transaction.state.log.num.partitions=4",
            # tests start groups all the time: no 3 s wait for more members before the first assignment
            "group.initial.rebalance.delay.ms=0",
            # a frozen follower leaves the ISR after 10 s (default 30 s) so the fault tier's acks=all
            # producers resume within a test's patience; detection of a dead broker: 6 s (default 9 s)
            "replica.lag.time.max.ms=10000",
            "broker.session.timeout.ms=6000",
            "broker.heartbeat.interval.ms=1000",
            "num.network.threads=2",
            "num.io.threads=4",
            "num.recovery.threads.per.data.dir=1",
            "log.flush.interval.messages=9223372036854775807",
            "",
        ])

    def start(self) -> "KafkaCluster":
        begun = time.monotonic()
        libs = kafka_libs(self.version)
        _sweep_stale()
        atexit.register(self.stop)
        try:
            (self.data_dir / "owner.pid").write_text(str(os.getpid()))
            (self.data_dir / "log4j2.properties").parent.mkdir(parents=True, exist_ok=True)
            (self.data_dir / "log4j2.properties").write_text(LOG4J2)
            for node_id in range(1, self.size + 1):
                home = self.data_dir / f"node{node_id}"
                (home / "logs").mkdir(parents=True, exist_ok=True)
                self.nodes.append(KafkaNode(node_id, free_port(), free_port(), home, libs))
            voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
            cluster_id = _cluster_id()
            for n in self.nodes:
                n.config.write_text(self.properties(n, voters))
            formats = [(n, n.format(cluster_id)) for n in self.nodes]
            for n, proc in formats:
                if proc.wait(START_TIMEOUT_S) != 0:
                    raise StackError(f"kafka-storage format failed for node {n.node_id}: "
                                     f"{(n.home / 'format.log').read_text(errors='replace')[-2000:]}")
            for n in self.nodes:
                n.start()
            for n in self.nodes:
                n.wait_listening()
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - begun
        return self

    def wait_healthy(self, timeout: float = START_TIMEOUT_S, brokers: int | None = None) -> None:
        """Until the metadata names every running broker (or `brokers` of them) and a controller."""
        from confluent_kafka.admin import AdminClient

        want = brokers or sum(1 for n in self.nodes if n.running)
        bootstrap = ",".join(n.bootstrap for n in self.nodes if n.running)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                meta = admin.list_topics(timeout=5)
                if len(meta.brokers) >= want and meta.controller_id >= 0:
                    return
                last = f"{len(meta.brokers)} of {want} brokers, controller {meta.controller_id}"
            except Exception as exc:  # not answering yet
                last = str(exc)
            time.sleep(0.5)
        raise StackError(f"Kafka cluster not healthy within {timeout:.0f}s: {last}\n"
                         + "\n".join(f"--- node {n.node_id} ---\n{n.tail(15)}" for n in self.nodes))

    def leader(self, topic: str, partition: int = 0, timeout: float = 60) -> int:
        """Node id leading this partition now (waits while it has none)."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": ",".join(n.bootstrap for n in self.nodes if n.running)})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                p = admin.list_topics(topic, timeout=5).topics[topic].partitions.get(partition)
                if p is not None and p.leader >= 0 and p.error is None:
                    return p.leader
            except Exception:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{topic}[{partition}] has no leader after {timeout}s")

    def pause(self) -> None:
        """Every node frozen (the embedded broker's pause, for tests that freeze "the broker")."""
        for n in self.nodes:
            n.pause()

    def resume(self) -> None:
        for n in self.nodes:
            n.resume()

    def stop(self) -> None:
        """Every node gone (SIGKILL: the data is thrown away with the folder)."""
        if self._stopped:
            return
        self._stopped = True
        for n in self.nodes:
            n.kill()
        if self._own_dir and not os.environ.get("SALESBUS_KEEP_KAFKA_DATA"):
            shutil.rmtree(self.data_dir, ignore_errors=True)
        atexit.unregister(self.stop)


class KafkaBroker:
    """A cluster seen as the embedded stack's `broker` (bootstrap, pause/resume, stop)."""

    def __init__(self, cluster: KafkaCluster):
        self.cluster = cluster

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    @property
    def proc(self) -> subprocess.Popen:
        return self.cluster.nodes[0].proc

    def pause(self) -> None:
        self.cluster.pause()

    def resume(self) -> None:
        self.cluster.resume()

    def stop(self) -> None:
        self.cluster.stop()


def main(argv: list[str]) -> int:
    """`python -m tests.kafka_cluster [VERSION]`: fetch (once) and say what the tiers run against."""
    version = argv[0] if argv else KAFKA_VERSION
    started = time.monotonic()
    try:
        libs = kafka_libs(version, quiet=True)
    except StackError as exc:
        print(exc, file=sys.stderr)
        return 1
    note = (libs / ".complete").read_text().strip()
    print(f"Apache Kafka {version} (org.apache.kafka:kafka_2.13 from Maven Central), jars in "
          f"{libs.relative_to(ROOT)} ({note}; ready in {time.monotonic() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
