"""``natkit stun-server --workers N`` as a user runs it (a subprocess on
loopback): the workers share the port, ``--stats`` adds up every worker,
and no process outlives the server, however it ends."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from natkit.aio import stun_worker
from natkit.endpoint import Endpoint
from natkit.stun.attributes import ChangeRequest
from natkit.stun.codec import binding_request, encode_message, parse_message
from natkit.stun.constants import ChangeFlags

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT and /proc: Linux")

ROOT = Path(__file__).resolve().parents[3]
#: Generous: only a hang should reach it (workers start a Python each).
DEADLINE = 30.0


def _free_port(hosts: tuple[str, ...] = ("127.0.0.1",), span: int = 1) -> int:
    """A port P with P..P+span-1 free for UDP and TCP on every host."""
    for port in range(41000 + os.getpid() % 500 * 20, 65000, 7):
        held: list[socket.socket] = []
        try:
            for host in hosts:
                for offset in range(span):
                    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                        sock = socket.socket(socket.AF_INET, kind)
                        held.append(sock)
                        sock.bind((host, port + offset))
            return port
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError("no free port")


class Server:
    """One ``natkit stun-server`` subprocess."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "natkit.cli", "stun-server", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            start_new_session=True,  # its own process group, as in a terminal
        )
        assert self.process.stdout is not None
        self.first_line = self.process.stdout.readline().strip()

    @property
    def workers(self) -> list[int]:
        children: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                children += [int(p) for p in (task / "children").read_text().split()]
        return children

    def stop(self, signum: int = signal.SIGINT, *, group: bool = False) -> tuple[int, str]:
        """Signal the server, or its whole process group (Ctrl-C in a terminal)."""
        if group:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)
        _, err = self.process.communicate(timeout=DEADLINE)
        return self.process.returncode, err


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate()


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan waits for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_not_running(pids: list[int]) -> list[int]:
    deadline = time.monotonic() + DEADLINE
    while (alive := [pid for pid in pids if _running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def _ask(client: socket.socket, request: bytes, server: tuple[str, int]) -> bytes:
    client.sendto(request, server)
    data: bytes = client.recv(2048)
    return data


def test_workers_share_the_port_and_stats_add_up(servers: list[Server]) -> None:
    port = _free_port()
    server = Server("--bind", "127.0.0.1", "--port", str(port), "--workers", "2", "--stats")
    servers.append(server)
    assert server.first_line == "ready"
    assert len(server.workers) == 2
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(32)]
    try:
        for number, client in enumerate(clients):
            client.settimeout(5)
            client.sendto(b"\x00\x01\x00\x00junk", ("127.0.0.1", port))  # malformed
            for _ in range(2):
                tid = number.to_bytes(12, "big")
                answer = _ask(client, encode_message(binding_request(tid)), ("127.0.0.1", port))
                assert parse_message(answer).transaction_id == tid
    finally:
        for client in clients:
            client.close()
    status, err = server.stop()
    assert status == 0, err
    stats = json.loads(err.strip().splitlines()[-1])
    # 32 source ports: both workers served some (all on one: p = 2**-31).
    assert stats["received"] == 32 * 3
    assert stats["answered"] == 32 * 2
    assert stats["malformed"] == {"truncated": 32}


@pytest.mark.parametrize(
    ("signum", "group"),
    [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["sigint", "sigterm", "ctrl-c"],
)
def test_stop_signal_ends_every_worker(servers: list[Server], signum: int, group: bool) -> None:
    server = Server("--bind", "127.0.0.1", "--port", str(_free_port()), "--workers", "3")
    servers.append(server)
    assert server.first_line == "ready"
    workers = server.workers
    assert len(workers) == 3
    status, err = server.stop(signum, group=group)
    assert (status, err) == (0, "")
    assert _wait_not_running(workers) == []


def test_workers_end_when_the_server_is_killed(servers: list[Server]) -> None:
    server = Server("--bind", "127.0.0.1", "--port", str(_free_port()), "--workers", "2")
    servers.append(server)
    workers = server.workers
    assert len(workers) == 2
    server.process.kill()  # no chance to clean up: the workers see their stdin close
    server.process.communicate(timeout=DEADLINE)
    assert _wait_not_running(workers) == []


def test_a_worker_that_dies_stops_the_server(servers: list[Server]) -> None:
    server = Server("--bind", "127.0.0.1", "--port", str(_free_port()), "--workers", "2")
    servers.append(server)
    first, second = server.workers
    os.kill(first, signal.SIGKILL)
    _, err = server.process.communicate(timeout=DEADLINE)
    assert server.process.returncode == 1
    assert "worker 0: ended with status -9; stopped" in err
    assert "no counters from worker 0" in err
    assert _wait_not_running([second]) == []


def test_sigterm_to_a_worker_is_an_orderly_stop(servers: list[Server]) -> None:
    """A service manager signals every process of the server at once; the
    worker's SIGTERM may be seen first, and that is a stop, not a crash."""
    server = Server("--bind", "127.0.0.1", "--port", str(_free_port()), "--workers", "2", "--stats")
    servers.append(server)
    first, second = server.workers
    os.kill(first, signal.SIGTERM)
    _, err = server.process.communicate(timeout=DEADLINE)
    assert server.process.returncode == 0, err
    assert json.loads(err.strip().splitlines()[-1])["received"] == 0
    assert _wait_not_running([second]) == []


def test_a_taken_port_is_refused_and_the_running_server_keeps_it(servers: list[Server]) -> None:
    port = _free_port()
    first = Server("--bind", "127.0.0.1", "--port", str(port), "--workers", "2", "--no-tcp")
    servers.append(first)
    assert first.first_line == "ready"
    second = Server("--bind", "127.0.0.1", "--port", str(port), "--workers", "2", "--no-tcp")
    servers.append(second)
    _, err = second.process.communicate(timeout=DEADLINE)
    assert second.process.returncode == 1
    assert "cannot listen" in err
    assert "Traceback" not in err
    # SO_REUSEPORT did not let the second server slip into the first's group
    # (it would have stayed up, serving part of the clients).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        assert _ask(client, encode_message(binding_request(bytes(12))), ("127.0.0.1", port))
    assert first.stop()[0] == 0


def test_rfc5780_and_tcp_with_workers(servers: list[Server]) -> None:
    """Two addresses x two ports through the pool (each worker gets its
    sockets in endpoint order), and TCP served by the main process."""
    port = _free_port(("127.0.0.1", "127.0.0.2"), span=2)
    server = Server(
        "--bind", "127.0.0.1", "--bind", "127.0.0.2",
        "--port", str(port), "--alt-port", str(port + 1), "--workers", "2",
    )  # fmt: skip
    servers.append(server)
    assert server.first_line == "ready"
    tid = bytes(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        for flags, source in [
            (ChangeFlags.NONE, ("127.0.0.1", port)),
            (ChangeFlags.CHANGE_PORT, ("127.0.0.1", port + 1)),
            (ChangeFlags.CHANGE_IP, ("127.0.0.2", port)),
            (ChangeFlags.CHANGE_IP | ChangeFlags.CHANGE_PORT, ("127.0.0.2", port + 1)),
        ]:
            request = encode_message(binding_request(tid, ChangeRequest(flags)))
            client.sendto(request, ("127.0.0.1", port))
            data, sender = client.recvfrom(2048)
            assert sender == source
            assert parse_message(data).response_origin == Endpoint.parse(f"{source[0]}:{source[1]}")
    with socket.create_connection(("127.0.0.2", port + 1), timeout=5) as stream:
        stream.sendall(encode_message(binding_request(tid)))
        header = stream.recv(20, socket.MSG_WAITALL)
        body = stream.recv(int.from_bytes(header[2:4], "big"), socket.MSG_WAITALL)
        answer = parse_message(header + body)
        assert answer.response_origin == Endpoint.parse(f"127.0.0.2:{port + 1}")
        assert answer.other_address == Endpoint.parse(f"127.0.0.2:{port}")
    assert server.stop()[0] == 0


@pytest.mark.parametrize("workers", ["-1", "257"])
def test_workers_out_of_range_is_a_usage_error(workers: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "natkit.cli",
            "stun-server",
            "--bind",
            "127.0.0.1",
            "--workers",
            workers,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode == 64
    assert "--workers" in result.stderr


def test_no_workers_serves_udp_in_the_main_process(servers: list[Server]) -> None:
    port = _free_port()
    server = Server("--bind", "127.0.0.1", "--port", str(port), "--workers", "0", "--stats")
    servers.append(server)
    assert server.workers == []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        assert _ask(client, encode_message(binding_request(bytes(12))), ("127.0.0.1", port))
    status, err = server.stop()
    assert status == 0
    assert json.loads(err.strip().splitlines()[-1])["answered"] == 1


def test_ipv6_workers(servers: list[Server]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    server = Server("--bind", "::1", "--port", str(port), "--workers", "2", "--no-tcp")
    servers.append(server)
    assert server.first_line == "ready"
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as client:
        client.bind(("::1", 0))
        client.settimeout(5)
        answer = parse_message(
            _ask(client, encode_message(binding_request(bytes(12))), ("::1", port))
        )
        assert answer.xor_mapped_address == Endpoint.parse(f"[::1]:{client.getsockname()[1]}")
    assert server.stop()[0] == 0


def test_worker_refuses_a_bad_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert stun_worker.main(["{not json"]) == 64
    assert stun_worker.main(['{"sockets": ["127.0.0.1:1"], "software": null, "fds": [1]}']) == 64
    assert stun_worker.main(['{"sockets": [], "software": null, "fds": []}']) == 64
    assert stun_worker.main(['{"sockets": ["127.0.0.1:1"], "software": null, "fds": [3, 4]}']) == 64
    assert stun_worker.main([]) == 64
    read, write = os.pipe()
    try:
        spec = f'{{"sockets": ["127.0.0.1:1"], "software": null, "fds": [{read}]}}'
        assert stun_worker.main([spec]) == 64  # a pipe, not a socket
    finally:
        os.close(read)
        os.close(write)
    assert "Traceback" not in capsys.readouterr().err
