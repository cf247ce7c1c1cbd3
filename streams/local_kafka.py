"""A real single-node Apache Kafka (KRaft, broker+controller) on 127.0.0.1, run from Maven jars.

There is no Docker engine on the machines we develop and test on, and no download site but the
package registries, so the broker's jars come from Maven Central (``streams/resources/kafka-pom.xml``) into a cache
outside the source tree. Used by the pytest session fixture and by ``segstream kafka``.

Example::

    with LocalKafka.from_settings(Settings().local_kafka) as kafka:
        print(kafka.bootstrap_servers)   # 127.0.0.1:<free port>
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from schemas.errors import SetupError
from streams.child_process import dies_with_parent
from streams.settings import LocalKafkaSettings

log = logging.getLogger("segstream.kafka")

POM = Path(__file__).resolve().parent / "resources" / "kafka-pom.xml"  # shipped in the package

_LOG4J2 = """\
Configuration:
  status: warn
  Appenders:
    File:
      name: FILE
      fileName: "{log_file}"
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: FILE
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: WARN
"""


class LocalKafkaError(SetupError):
    """The local broker could not be prepared or started; the message says where to look."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_jars(version: str, cache_dir: Path) -> Path:
    """Return the directory holding the broker's jars, resolving them with Maven once per version.

    A file lock makes parallel callers (pytest-xdist, two terminals) wait for one download.
    """
    libs = cache_dir / f"kafka-{version}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise LocalKafkaError("Maven ('mvn') is needed to fetch the Kafka jars; install it (apt-get install maven).")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".kafka-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return libs
        staging = Path(tempfile.mkdtemp(prefix=f"kafka-{version}-", dir=cache_dir))
        log.info("Fetching Apache Kafka %s jars from Maven Central into %s", version, libs)
        cmd = [
            "mvn", "-q", "-B", "-f", str(POM), f"-Dkafka.version={version}",
            "dependency:copy-dependencies", f"-DoutputDirectory={staging}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not any(staging.glob(f"kafka_2.13-{version}.jar")):
            shutil.rmtree(staging, ignore_errors=True)
            raise LocalKafkaError(
                f"mvn could not resolve org.apache.kafka:kafka_2.13:{version}:\n{proc.stdout}\n{proc.stderr}"
            )
        if libs.exists():
            shutil.rmtree(libs)
        libs.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(libs)
        marker.touch()
    return libs


def _cluster_id() -> str:
    # Kafka's own Uuid.randomUuid().toString(): URL-safe base64 of 16 random bytes, unpadded.
    # It may start with "-", hence "--cluster-id=..." (as "-t ID" argparse takes it for a flag).
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


@dataclass
class LocalKafka:
    """A broker process with its own data directory; ``start()`` blocks until it serves requests."""

    libs: Path
    heap: str = "512m"
    port: int = 0
    start_timeout_s: float = 90.0
    run_dir: Path | None = None
    keep_run_dir: bool = True
    #: username -> password: clients must authenticate with SASL/PLAIN (over plaintext: for tests of
    #: the client settings, not for production)
    sasl_users: dict[str, str] | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _controller_port: int = field(default=0, init=False, repr=False)
    started_in_s: float | None = field(default=None, init=False)

    @classmethod
    def from_settings(cls, settings: LocalKafkaSettings, run_dir: Path | None = None) -> "LocalKafka":
        libs = ensure_jars(settings.version, settings.cache_dir)
        return cls(
            libs=libs, heap=settings.heap, port=settings.port,
            start_timeout_s=settings.start_timeout_s, run_dir=run_dir,
        )

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "broker.log"

    def _java(self, main: str, *args: str) -> list[str]:
        assert self.run_dir is not None  # set by start()
        return [
            "java", f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.run_dir / 'log4j2.yaml'}",
            "-cp", f"{self.libs}/*", main, *args,
        ]

    def _write_config(self) -> Path:
        assert self.run_dir is not None
        # Kept across restarts: the controller's address is part of the KRaft quorum's identity.
        controller_port = self._controller_port = self._controller_port or free_port()
        protocol = "SASL_PLAINTEXT" if self.sasl_users else "PLAINTEXT"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"{protocol}://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"{protocol}://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": f"{protocol}:{protocol},CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": protocol,
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "log.dirs": str(self.run_dir / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.flush.interval.messages": "9223372036854775807",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
        }
        if self.sasl_users:
            users = " ".join(f'user_{name}="{password}"' for name, password in self.sasl_users.items())
            name, password = next(iter(self.sasl_users.items()))  # the broker talks to itself as the first user
            props.update({
                "sasl.enabled.mechanisms": "PLAIN",
                "sasl.mechanism.inter.broker.protocol": "PLAIN",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config":
                    "org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f'username="{name}" password="{password}" {users};',
            })
        path = self.run_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.run_dir / "log4j2.yaml").write_text(_LOG4J2.format(log_file=self.log_file))
        return path

    def start(self) -> "LocalKafka":
        if self._proc is not None:
            raise LocalKafkaError("broker already started")
        if shutil.which("java") is None:
            raise LocalKafkaError("Java 17+ is needed to run the broker (apt-get install openjdk-17-jre-headless).")
        t0 = time.monotonic()
        if self.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="segstream-kafka-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_port()
        config = self._write_config()
        if not (self.run_dir / "data" / "meta.properties").exists():  # else a restart on the same data
            fmt = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", f"--cluster-id={_cluster_id()}", "-c", str(config)),
                capture_output=True, text=True,
            )
            if fmt.returncode != 0:
                raise LocalKafkaError(f"formatting the KRaft storage failed:\n{fmt.stdout}\n{fmt.stderr}")
        stdout = open(self.run_dir / "broker.stdout", "wb")
        self._proc = subprocess.Popen(
            self._java("kafka.Kafka", str(config)), stdout=stdout, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop the broker cleanly
            preexec_fn=dies_with_parent(),  # and if we are killed, it stops too (streams.child_process)
        )
        self._wait_ready(t0)
        self.started_in_s = time.monotonic() - t0
        # Debug only: the commands that start a broker say so themselves, in their own words (at info
        # level this line came out twice at every start of 'segstream run' and 'segstream kafka').
        log.debug("Kafka %s ready in %.1fs (log: %s)", self.bootstrap_servers, self.started_in_s, self.log_file)
        return self

    def _wait_ready(self, t0: float) -> None:
        """Ready = the broker answers a metadata request (an open port alone is too early)."""
        from streams.kafka_admin import broker_answers

        deadline = t0 + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise LocalKafkaError(f"broker exited with {self._proc.returncode}; see {self.log_file}\n{self.tail_log()}")
            if broker_answers(self.bootstrap_servers, timeout_s=2.0, **self.client_kwargs()):
                return
            time.sleep(0.2)
        self.stop()
        raise LocalKafkaError(f"broker not ready after {self.start_timeout_s}s; see {self.log_file}\n{self.tail_log()}")

    def client_kwargs(self) -> dict[str, str]:
        """What an aiokafka client needs to talk to this broker (the first SASL user)."""
        if not self.sasl_users:
            return {}
        name, password = next(iter(self.sasl_users.items()))
        return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                "sasl_plain_username": name, "sasl_plain_password": password}

    def tail_log(self, lines: int = 30) -> str:
        for f in (self.log_file, self.log_file.with_name("broker.stdout")):
            if f.exists():
                return "\n".join(f.read_text(errors="replace").splitlines()[-lines:])
        return "(no broker log)"

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM and wait for a controlled shutdown; SIGKILL only if it hangs."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("broker did not stop in %.0fs; killing it", timeout_s)
            proc.kill()
            proc.wait()
        if not self.keep_run_dir and self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL, for crash tests."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> "LocalKafka":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

