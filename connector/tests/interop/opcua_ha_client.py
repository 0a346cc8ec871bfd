"""asyncua's HaClient (warm mode) subscribed through a redundant pair of connectors.

Driven by connector/tests/opcua_ha.rs. Prints one JSON object per line on stdout, each
with `t`, this process's monotonic clock in seconds:

  {"ev": "ready", "ns": N}                     the tags namespace index, before HaClient starts
  {"ev": "level", "url": U, "level": L}        HaClient's view of a server's ServiceLevel changed
  {"ev": "active", "url": U or null}           HaClient's active (reporting) client changed
  {"ev": "dc", "url": U, "node": TAG, "value": V, "status": S, "code": C, "good": B,
   "source_us": T}
                                               a data change HaClient delivered (T: µs since
                                               the Unix epoch, the SourceTimestamp)
  {"ev": "mark", "name": NAME}                 echo of "mark NAME" read on stdin
  {"ev": "stopped"}                            after "stop" (or end of input): HaClient stopped

The test writes "mark NAME" just before it causes a fault, so the gap after each fault is
measured on one clock, this one.
"""

import argparse
import asyncio
import datetime
import json
import logging
import os
import sys
import time

from asyncua import Client, ua
from asyncua.client.ha.ha_client import HaClient, HaConfig, HaMode

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def emit(**fields):
    fields["t"] = time.monotonic()
    sys.stdout.write(json.dumps(fields, default=str) + "\n")
    sys.stdout.flush()


def micros(ts):
    if ts is None:
        return None
    if ts.tzinfo is None:
        # asyncua gives naive datetimes in UTC.
        ts = ts.replace(tzinfo=datetime.timezone.utc)
    return (ts - EPOCH) // datetime.timedelta(microseconds=1)


def plain(v):
    # Counters arrive as int (UInt64), analogs as float, digitals as bool: all JSON.
    return v if isinstance(v, (bool, int, float)) or v is None else str(v)


class Handler:
    def __init__(self, urls_by_session):
        # HaClient gives every connection the same handler; the node's session tells
        # which connection (connector) a notification came through.
        self.urls_by_session = urls_by_session

    def datachange_notification(self, node, val, data):
        dv = data.monitored_item.Value
        emit(
            ev="dc",
            url=self.urls_by_session.get(id(node.session)),
            node=node.nodeid.Identifier,
            value=plain(val),
            status=dv.StatusCode.name,
            code=dv.StatusCode.value,
            good=dv.StatusCode.is_good(),
            source_us=micros(dv.SourceTimestamp),
        )

    def status_change_notification(self, status):
        emit(ev="status_change", status=str(status))


async def namespace_index(urls, uri):
    # HaClient takes NodeId strings: learn the tags namespace's index from whichever
    # connector answers (NodeIds are the same on every connector of a site).
    last = None
    for _ in range(50):
        for url in urls:
            c = Client(url=url, timeout=2)
            c.session_timeout = 60_000  # what the server grants at most: no warning
            try:
                async with c:
                    return await c.get_namespace_index(uri)
            except Exception as e:  # not up yet: try the next one
                last = e
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no connector answered: {last!r}")


async def watch(ha):
    # HaClient has no callback for failovers: poll its state and report each change.
    active = "unset"
    levels = {}
    while True:
        url = ha.active_client.server_url.geturl() if ha.active_client else None
        if url != active:
            active = url
            emit(ev="active", url=url)
        for info in ha.clients.values():
            level = int(info.status)
            if levels.get(info.url) != level:
                levels[info.url] = level
                emit(ev="level", url=info.url, level=level)
        await asyncio.sleep(0.02)


async def commands():
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == "stop":
            return
        word, _, rest = line.strip().partition(" ")
        if word == "mark":
            emit(ev="mark", name=rest)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", action="append", required=True)
    p.add_argument("--tag", action="append", required=True)
    p.add_argument("--namespace-uri", default="urn:smart-connector:tags")
    p.add_argument("--publishing-interval", type=int, default=100)
    args = p.parse_args()
    # HA_CLIENT_LOG=INFO shows HaClient's own view (keepalives, failovers) on stderr.
    logging.basicConfig(
        level=os.environ.get("HA_CLIENT_LOG", "WARNING"),
        stream=sys.stderr,
        format="%(relativeCreated)d ms %(name)s %(levelname)s %(message)s",
    )

    ns = await namespace_index(args.url, args.namespace_uri)
    emit(ev="ready", ns=ns)
    # Timers (seconds) as short as HaClient takes: they bound how soon it notices a
    # ServiceLevel change or a dead connection, and how soon it re-applies its modes.
    config = HaConfig(
        HaMode.WARM,
        keepalive_timer=1,
        manager_timer=1,
        reconciliator_timer=1,
        request_timeout=2,
        session_timeout=30,
        urls=args.url,
    )
    ha = HaClient(config)
    sessions = {id(c.uaclient): c.server_url.geturl() for c in ha.clients}
    await ha.start()
    watcher = asyncio.create_task(watch(ha))
    sub = await ha.create_subscription(args.publishing_interval, Handler(sessions))
    await ha.subscribe_data_change(sub, [f"ns={ns};s={t}" for t in args.tag])
    try:
        await commands()
    finally:
        watcher.cancel()
        await ha.stop()
        emit(ev="stopped")


if __name__ == "__main__":
    asyncio.run(main())
