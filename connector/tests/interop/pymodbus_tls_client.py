#!/usr/bin/env python3
"""Modbus/TCP Security (Modbus over TLS) interop client built on pymodbus.

Used by the connector's Rust integration tests to check that a *third-party*
Modbus/TLS client can talk to our server. It uses pymodbus's own synchronous
TLS client (``pymodbus.client.ModbusTlsClient``), verifies the server
certificate against ``--ca`` (including the host name / IP SAN) and presents
a client certificate (mutual TLS).

Written against pymodbus 3.16.1 (``pip install pymodbus==3.16.1``); the unit
id keyword is ``device_id=`` there (older 3.x used ``slave=``), which is
detected at run time.

Output contract:
  * exit 0: exactly one JSON object on stdout, e.g.
        {"read": [1, 2, 3], "write": "ok"}
    A Modbus exception response is reported in place of the result:
        {"read": {"exception": 2}}   {"write": {"exception": 1}}
    Operations run in the order their options appear on the command line.
  * exit 2: connection / TLS / transport failure (refused, handshake failed,
    certificate rejected, no response within --timeout, connection closed).
    A one-line message starting "pymodbus_tls_client: " goes to stderr and
    nothing is printed on stdout.
  * exit 64: bad command line (argparse's own exit 2 is remapped so it cannot
    be confused with a connection failure). ``--help`` exits 0.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import signal
import ssl
import sys

PROG = "pymodbus_tls_client"
EXIT_COMM = 2
EXIT_USAGE = 64


def fail(msg: str, code: int = EXIT_COMM) -> "NoReturn":  # type: ignore[name-defined]
    sys.stderr.write(f"{PROG}: {msg}\n")
    sys.stderr.flush()
    # os._exit: never block on pymodbus/ssl teardown after a failure.
    os._exit(code)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{PROG}: error: {message}\n")
        sys.exit(EXIT_USAGE)


def _int(text: str) -> int:
    return int(text, 0)  # accepts 10, 0x0a, 0o12, 0b1010


def _parse_read(text: str) -> tuple[int, int]:
    try:
        addr_s, count_s = text.split(":", 1)
        addr, count = _int(addr_s), _int(count_s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ADDR:COUNT, got {text!r}") from None
    if not 0 <= addr <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"address {addr} out of range 0..65535")
    if not 1 <= count <= 125:
        raise argparse.ArgumentTypeError(f"count {count} out of range 1..125")
    if addr + count > 0x10000:
        raise argparse.ArgumentTypeError("ADDR+COUNT runs past 65535")
    return addr, count


def _parse_write(text: str) -> tuple[int, int]:
    try:
        addr_s, value_s = text.split("=", 1)
        addr, value = _int(addr_s), _int(value_s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ADDR=VALUE, got {text!r}") from None
    if not 0 <= addr <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"address {addr} out of range 0..65535")
    if not 0 <= value <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"value {value} out of range 0..65535")
    return addr, value


class _Op(argparse.Action):
    """Record operations in command-line order; each kind at most once."""

    def __call__(self, parser, namespace, values, option_string=None):
        ops = getattr(namespace, "ops", None) or []
        if any(kind == self.dest for kind, _ in ops):
            parser.error(f"{option_string} given more than once")
        ops.append((self.dest, values))
        namespace.ops = ops


def parse_args(argv=None):
    p = _Parser(
        prog=PROG,
        description="Modbus/TCP Security (TLS, mutual auth) client using pymodbus's "
        "ModbusTlsClient. Prints one JSON object on stdout; exits 2 on "
        "connection/TLS failure.",
        epilog="example: %(prog)s --host 127.0.0.1 --port 8802 --ca ca.crt "
        "--cert client.crt --key client.key --read 100:10 --write 105=4242",
    )
    p.add_argument("--host", required=True, help="server host name or IPv4 address")
    p.add_argument("--port", type=int, default=802, help="server port (default 802)")
    p.add_argument("--ca", required=True, help="PEM CA bundle to verify the server with")
    p.add_argument("--cert", help="PEM client certificate (chain) to present")
    p.add_argument("--key", help="PEM private key of --cert")
    p.add_argument(
        "--server-name",
        help="name to verify the server certificate against and send as SNI "
        "(default: --host; an IP address is matched against IP SANs)",
    )
    p.add_argument("--unit", type=_int, default=1, help="unit / device id (default 1)")
    p.add_argument(
        "--read", dest="read", type=_parse_read, action=_Op, metavar="ADDR:COUNT",
        help="read COUNT holding registers from ADDR (function 03)",
    )
    p.add_argument(
        "--write", dest="write", type=_parse_write, action=_Op, metavar="ADDR=VALUE",
        help="write one holding register (function 06)",
    )
    p.add_argument(
        "--timeout", type=float, default=5.0,
        help="connect/handshake/response timeout in seconds (default 5)",
    )
    p.add_argument(
        "--retries", type=int, default=0,
        help="pymodbus request retries after a response timeout (default 0)",
    )
    p.add_argument(
        "--debug", action="store_true", help="send pymodbus debug logging to stderr"
    )
    p.set_defaults(ops=[])
    args = p.parse_args(argv)
    if not args.ops:
        p.error("nothing to do: give --read and/or --write")
    if (args.cert is None) != (args.key is None):
        p.error("--cert and --key must be given together")
    if not 0 <= args.unit <= 255:
        p.error("--unit must be 0..255")
    if args.timeout <= 0:
        p.error("--timeout must be > 0")
    if args.retries < 0:
        p.error("--retries must be >= 0")
    return args


class _HostnameContext(ssl.SSLContext):
    """SSLContext that always supplies server_hostname.

    pymodbus's sync ModbusTlsClient.connect() calls
    ``sslctx.wrap_socket(sock, server_side=False)`` without server_hostname,
    which with PROTOCOL_TLS_CLIENT (check_hostname=True) raises ValueError.
    Filling it in here keeps full verification: chain against --ca *and*
    host name / IP SAN, plus SNI for DNS names.
    """

    expected_name: str | None = None

    def wrap_socket(self, sock, *args, server_hostname=None, **kwargs):
        if server_hostname is None and not kwargs.get("server_side", False):
            server_hostname = self.expected_name
        return super().wrap_socket(sock, *args, server_hostname=server_hostname, **kwargs)


def build_sslctx(args) -> ssl.SSLContext:
    ctx = _HostnameContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.expected_name = args.server_name or args.host
    try:
        ctx.load_verify_locations(cafile=args.ca)
    except (OSError, ssl.SSLError) as e:
        fail(f"cannot load CA file {args.ca!r}: {e}", EXIT_USAGE)
    if args.cert:
        try:
            ctx.load_cert_chain(certfile=args.cert, keyfile=args.key)
        except (OSError, ssl.SSLError) as e:
            fail(f"cannot load client cert/key {args.cert!r}/{args.key!r}: {e}", EXIT_USAGE)
    return ctx


class _LogCapture(logging.Handler):
    """Keep pymodbus's error messages to explain a failure (it logs, then returns False)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        try:
            self.messages.append(record.getMessage())
        except Exception:  # pragma: no cover - never let logging break us
            pass


def _unit_kw(method) -> str:
    params = inspect.signature(method).parameters
    for name in ("device_id", "slave", "unit"):
        if name in params:
            return name
    raise RuntimeError(f"cannot find the unit-id keyword of {method!r}")


def main(argv=None) -> int:
    args = parse_args(argv)

    # Hard upper bound so a wedged peer can never hang the calling test.
    budget = int(args.timeout * (2 + len(args.ops) * (args.retries + 1))) + 2
    signal.signal(signal.SIGALRM, lambda *_: fail(f"gave up after {budget} s overall"))
    signal.alarm(budget)

    try:
        import pymodbus
        from pymodbus.client import ModbusTlsClient
        from pymodbus.exceptions import ModbusException
    except ImportError as e:
        fail(f"pymodbus is not installed ({e}); pip install pymodbus==3.16.1", EXIT_USAGE)

    capture = _LogCapture()
    pm_log = logging.getLogger("pymodbus")
    pm_log.addHandler(capture)
    pm_log.propagate = False  # keep stderr to our one clear line unless --debug
    if args.debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        pm_log.addHandler(handler)
        pm_log.setLevel(logging.DEBUG)
        logging.getLogger("pymodbus.logging").setLevel(logging.DEBUG)

    sslctx = build_sslctx(args)
    client = ModbusTlsClient(
        args.host,
        port=args.port,
        sslctx=sslctx,
        timeout=args.timeout,
        retries=args.retries,
        reconnect_delay=0,
    )
    where = f"{args.host}:{args.port}"

    def detail() -> str:
        return f" ({'; '.join(capture.messages)})" if capture.messages else ""

    try:
        if not client.connect():
            fail(f"cannot connect to {where} over TLS{detail()}")
        tls = client.socket.version() if client.socket is not None else "?"
        if args.debug:
            sys.stderr.write(f"{PROG}: connected to {where} with {tls} (pymodbus {pymodbus.__version__})\n")

        result: dict[str, object] = {}
        for kind, params in args.ops:
            if kind == "read":
                addr, count = params
                fn = client.read_holding_registers
                rr = fn(addr, count=count, **{_unit_kw(fn): args.unit})
                if rr.isError():
                    result["read"] = {"exception": int(getattr(rr, "exception_code", 0))}
                else:
                    regs = list(rr.registers)
                    if len(regs) < count:
                        fail(f"read {addr}:{count} from {where}: short response {regs}")
                    result["read"] = regs[:count]
            else:
                addr, value = params
                fn = client.write_register
                rr = fn(addr, value, **{_unit_kw(fn): args.unit})
                if rr.isError():
                    result["write"] = {"exception": int(getattr(rr, "exception_code", 0))}
                else:
                    result["write"] = "ok"
    except ssl.SSLError as e:
        # With TLS 1.3 a server's rejection of our certificate only shows up on
        # the first read after the handshake, i.e. here rather than in connect().
        fail(f"TLS error talking to {where}: {e}{detail()}")
    except (ModbusException, OSError) as e:
        text = str(e)
        hint = ""
        if "unexpectedly closed" in text:
            hint = (
                " [the server closed the connection without a Modbus response; with"
                " TLS 1.3 this is also how a rejected client certificate shows up]"
            )
        elif "Unable to decode" in text:
            hint = (
                " [pymodbus's TLS framer needs the whole response ADU (MBAP header +"
                " PDU) in one TLS record/read; a response split across writes fails]"
            )
        extra = "; ".join(m for m in capture.messages if m not in text)
        fail(f"{type(e).__name__} talking to {where}: {text}{hint}" + (f" ({extra})" if extra else ""))
    finally:
        signal.alarm(0)

    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    try:
        client.close()
    except Exception:  # noqa: BLE001 - result already printed
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
