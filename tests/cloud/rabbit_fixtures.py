"""A real three-node RabbitMQ cluster on loopback, with the MQTT plugin and the cloud's HTTP auth.

``rabbit_cluster`` (module scope) starts the nodes in parallel from Debian's ``rabbitmq-server`` (run as the
current user: the ``/usr/lib/rabbitmq/bin`` scripts, not the ``/usr/sbin`` wrappers that switch to the
``rabbitmq`` user), each ``rabbit-N@localhost`` with its own AMQP, MQTT and distribution ports, data, log and
config under one temp dir, a private ``epmd`` on a free port of 127.0.0.1 and a shared Erlang cookie (a shared
``HOME``); nodes 2 and 3 ``join_cluster`` node 1. Every listener is on 127.0.0.1 (the Erlang distribution too:
``inet_dist_use_interface``). The nodes ask the cloud at ``auth_url`` (a port reserved up front: the workers of the
tests bind it) about every login. Everything is stopped at the end, epmd included; no beam process is left.

Not installed: the tests skip with one line, and fail when ``CI`` is set (as the PostgreSQL fixture does).
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gizdev.cloud.broker.rabbitmq import render_conf, render_enabled_plugins
from tests.cloud.broker_fixtures import free_port, pid_alive

__all__ = ["RabbitCluster", "RabbitNode", "rabbit_cluster_fixture"]

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
START_TIMEOUT_S = 90.0
CLI_PORTS = 12  # rabbitmqctl runs at once (a few per node) each need a distribution port


def free_port_range(count: int) -> tuple[int, int]:
    """``count`` consecutive free loopback ports below the ephemeral range (where free_port's come from)."""
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(20000, 30000 - count)
        sockets: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first, first + count - 1
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports in 20000-30000")


SERVICE_USER = "gizdev-cloud"


@dataclass
class RabbitNode:
    index: int
    amqp_port: int
    mqtt_port: int
    dist_port: int
    base: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"rabbit-{self.index}@localhost"


@dataclass
class RabbitCluster:
    base: Path
    auth_port: int  # where the nodes ask the cloud (tests run a worker's HTTP there)
    size: int = 3
    service_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    epmd_port: int = field(default_factory=free_port)
    cli_ports: tuple[int, int] = field(default_factory=lambda: free_port_range(CLI_PORTS))
    nodes: list[RabbitNode] = field(default_factory=list)
    startup_s: float = 0.0

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self.auth_port}"

    def amqp_url(self, index: int) -> str:
        node = self.nodes[index - 1]
        return f"amqp://{SERVICE_USER}:{self.service_password}@127.0.0.1:{node.amqp_port}/"

    @property
    def amqp_urls(self) -> tuple[str, ...]:
        return tuple(self.amqp_url(node.index) for node in self.nodes)

    def node(self, index: int) -> RabbitNode:
        return self.nodes[index - 1]

    # -- processes ------------------------------------------------------------------------------------------------

    def env(self, node: RabbitNode) -> dict[str, str]:
        loopback_dist = "-kernel inet_dist_use_interface {127,0,0,1}"
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.base / "home"),  # the shared .erlang.cookie
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(node.base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(node.base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.base / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(node.base / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(node.base / "rabbit.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": loopback_dist,
            "RABBITMQ_CTL_ERL_ARGS": loopback_dist,
            # The CLI's own distribution listener; by default 35672-35682, which may be one of our free ports.
            "RABBITMQ_CTL_DIST_PORT_MIN": str(self.cli_ports[0]),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(self.cli_ports[1]),
        }

    def ctl(self, node: RabbitNode, *args: str, timeout_s: float = 60.0) -> str:
        result = subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", node.name, *args],
            env=self.env(node),
            capture_output=True,
            timeout=timeout_s,
            check=False,
            cwd=node.base,  # whatever Erlang writes where it stands (crash dumps) stays in the temp dir
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl {' '.join(args)} on {node.name}: {result.stderr.decode(errors='replace')[-800:]}"
            )
        return result.stdout.decode(errors="replace")

    def _prepare(self) -> None:
        home = self.base / "home"
        home.mkdir(parents=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        for index in range(1, self.size + 1):
            node = RabbitNode(index, free_port(), free_port(), free_port(), self.base / f"node{index}")
            node.base.mkdir()
            (node.base / "rabbitmq.conf").write_text(
                render_conf(
                    cloud_url=self.auth_url, amqp=("127.0.0.1", node.amqp_port), mqtt=("127.0.0.1", node.mqtt_port)
                )
            )
            (node.base / "enabled_plugins").write_text(render_enabled_plugins())
            (node.base / "advanced.config").write_text("[].\n")
            (node.base / "rabbitmq-env.conf").write_text("")
            self.nodes.append(node)

    def _spawn(self, node: RabbitNode) -> None:
        log = (node.base / "server.out").open("wb")
        with log:
            node.process = subprocess.Popen(
                [str(RABBIT_BIN / "rabbitmq-server")],
                env=self.env(node),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C of the test run is not theirs; close() stops them
                cwd=node.base,  # crash dumps and the like stay in the temp dir
            )

    def _await(self, node: RabbitNode) -> None:
        try:
            # `wait` first waits for the pid file (await_startup fails at once if the node is not up yet).
            pid_file = str(node.base / "rabbit.pid")
            self.ctl(node, "wait", pid_file, "--timeout", str(int(START_TIMEOUT_S)), timeout_s=START_TIMEOUT_S + 10)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{node.name} said: {self.log_tail(node)}") from None

    def log_tail(self, node: RabbitNode) -> str:
        texts = [(node.base / "server.out").read_text(errors="replace")[-1500:]]
        texts += [path.read_text(errors="replace")[-1500:] for path in sorted((node.base / "log").glob("*.log"))]
        return "\n".join(texts)

    def _join(self, node: RabbitNode) -> None:
        self.ctl(node, "stop_app")
        self.ctl(node, "join_cluster", self.nodes[0].name)
        self.ctl(node, "start_app")

    def start(self) -> RabbitCluster:
        started = time.monotonic()
        self._prepare()
        for node in self.nodes:
            self._spawn(node)
        with ThreadPoolExecutor(self.size) as pool:
            list(pool.map(self._await, self.nodes))
            list(pool.map(self._join, self.nodes[1:]))
        self.startup_s = time.monotonic() - started
        return self

    def stop_node(self, index: int) -> None:
        """Stop one node (``rabbitmqctl stop``: its connections are closed) and wait for its process to end."""
        node = self.node(index)
        self.ctl(node, "stop")
        if node.process is not None:
            node.process.wait(timeout=30)

    def restart_node(self, index: int) -> None:
        """Start a stopped node again (it rejoins the cluster from its own data)."""
        node = self.node(index)
        if node.process is not None and node.process.poll() is None:
            return
        (node.base / "rabbit.pid").unlink(missing_ok=True)
        self._spawn(node)
        self._await(node)

    def running_nodes(self, via: int = 1) -> str:
        return self.ctl(self.node(via), "cluster_status", "--formatter", "json")

    def beam_pids(self) -> list[int]:
        pids: list[int] = []
        for node in self.nodes:
            pid_file = node.base / "rabbit.pid"
            if pid_file.exists():
                text = pid_file.read_text().strip()
                if text.isdigit() and pid_alive(int(text)):
                    pids.append(int(text))
        return pids

    def close(self) -> None:
        """Stop every node and the private epmd; kill (by pid) whatever does not stop."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self.ctl(node, "stop", timeout_s=30)
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(node.process.pid, 9)
                node.process.wait(timeout=10)
        for pid in self.beam_pids():
            os.kill(pid, 9)
        epmd = shutil.which("epmd") or next(iter(sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))), None)
        if epmd is not None:
            subprocess.run(
                [str(epmd), "-port", str(self.epmd_port), "-kill"],
                env={"ERL_EPMD_PORT": str(self.epmd_port), "PATH": os.environ.get("PATH", "")},
                capture_output=True,
                timeout=10,
                check=False,
            )


def rabbit_missing() -> str | None:
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        return f"rabbitmq-server is not installed ({RABBIT_BIN}; apt-get install rabbitmq-server)"
    return None


def _start_cluster(attempts: int = 2) -> RabbitCluster:
    """A started cluster; a failed start (a free port taken by another process meanwhile) is tried once more on
    fresh ports, and its error kept in the next one's."""
    failures: list[str] = []
    for _ in range(attempts):
        base = Path(tempfile.mkdtemp(prefix="gizdev-rabbit-"))
        cluster = RabbitCluster(base, auth_port=free_port())
        try:
            return cluster.start()
        except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
            failures.append(str(exc)[-3000:])
        finally:
            if not cluster.startup_s:
                cluster.close()
                shutil.rmtree(base, ignore_errors=True)
    raise RuntimeError("the RabbitMQ cluster did not start:\n" + "\n---\n".join(failures))


@pytest.fixture(scope="module", name="rabbit_cluster")
def rabbit_cluster_fixture() -> Iterator[RabbitCluster]:
    """A running three-node cluster for the tests of one module (its startup is what costs)."""
    missing = rabbit_missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"RabbitMQ is required when CI is set, but: {missing}")
        pytest.skip(missing)
    cluster = _start_cluster()
    base = cluster.base
    try:
        yield cluster
    finally:
        cluster.close()
        shutil.rmtree(base, ignore_errors=True)
