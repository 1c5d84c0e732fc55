"""The outage helper itself: a cut proxy must refuse the very next connection."""

from __future__ import annotations

import platform
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.tcp_proxy import TcpProxy


@pytest.fixture
def echo_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(1024):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


# accept4 and accept, per architecture (the kernel's syscall table)
_ACCEPT_SYSCALLS = {"x86_64": {288, 43}, "aarch64": {242, 202}}


def wait_blocked_in_accept(thread: threading.Thread) -> None:
    """Wait until ``thread`` sits in accept(): the state in which a plain close() of
    the listener used to leave the next client proxied. Linux tells it in /proc."""
    numbers = _ACCEPT_SYSCALLS.get(platform.machine())
    path = Path(f"/proc/self/task/{thread.native_id}/syscall")
    if not numbers or not path.exists():
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        fields = path.read_text().split()
        if fields and fields[0].isdigit() and int(fields[0]) in numbers:
            return
        time.sleep(0.005)
    raise AssertionError("the proxy's accept thread never blocked in accept()")


def echo_through(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
        conn.sendall(b"ping")
        return conn.recv(16)


class TestCut:
    def test_the_first_connection_after_a_cut_is_refused(self, echo_server):
        proxy = TcpProxy("127.0.0.1", echo_server).start()
        assert echo_through(proxy.port) == b"ping"
        wait_blocked_in_accept(proxy.accept_thread)
        proxy.cut()
        # before the fix, the accept() thread blocked on the closed listener took this
        # one connection and proxied it as if nothing had happened
        for _ in range(3):
            with pytest.raises(OSError):
                echo_through(proxy.port)

    def test_open_connections_are_dropped_and_restore_serves_again(self, echo_server):
        proxy = TcpProxy("127.0.0.1", echo_server).start()
        conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=3)
        conn.sendall(b"a")
        assert conn.recv(16) == b"a"
        proxy.cut()
        assert conn.recv(16) == b""  # the peer went away
        conn.close()
        proxy.restore()
        assert echo_through(proxy.port) == b"ping"
        proxy.cut()
