"""tests/harness/servers.py free_port(): a port is handed out only when it
is free for both TCP and UDP on 127.0.0.1 (dnsmasq fixtures bind both on
the port they are given)."""
import socket

import servers


def test_port_taken_by_udp_only_is_not_free():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        assert not servers._bind_free(port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        assert not servers._bind_free(port)


def test_free_port_binds_tcp_and_udp():
    for _ in range(20):
        port = servers.free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", port))
            u.bind(("127.0.0.1", port))
