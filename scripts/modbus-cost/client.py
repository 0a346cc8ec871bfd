#!/usr/bin/env python3
"""The Modbus master of scripts/modbus-cost.sh: N requests FC3 x QUANTITY registers at
ADDRESS over one connection, one in flight, each answer checked (a normal FC3 response
of the right length). Waits (up to 60 s) until the server answers data, not exception
0B, before it starts counting; prints the number of requests answered."""
import socket
import struct
import sys
import time


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise SystemExit("server closed the connection")
        buf += chunk
    return buf


def request(sock, tid, address, quantity):
    sock.sendall(struct.pack(">HHHBBHH", tid, 0, 6, 1, 3, address, quantity))
    header = recv_exact(sock, 7)
    _, _, length, _ = struct.unpack(">HHHB", header)
    return recv_exact(sock, length - 1)


def main():
    if len(sys.argv) != 6:
        raise SystemExit("usage: client.py HOST PORT N ADDRESS QUANTITY")
    host, port, n, address, quantity = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    deadline = time.monotonic() + 60
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=30)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{host}:{port} does not accept connections")
            time.sleep(0.1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # A connector answers 0B until it has a catalogue and data: wait for data.
    while True:
        pdu = request(sock, 0, address, quantity)
        if pdu[0] == 3:
            break
        if pdu[0] != 0x83 or time.monotonic() > deadline:
            raise SystemExit(f"unexpected answer {pdu.hex()}")
        time.sleep(0.2)
    for i in range(n):
        pdu = request(sock, (i + 1) & 0xFFFF, address, quantity)
        if pdu[0] != 3 or pdu[1] != 2 * quantity:
            raise SystemExit(f"request {i}: unexpected answer {pdu[:4].hex()}")
    sock.close()
    print(n)


if __name__ == "__main__":
    main()
