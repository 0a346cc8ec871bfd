#!/usr/bin/env python3
"""An OPC UA client from another project (python asyncua), driven by connector/tests/opcua.rs.

Runs the operations given on the command line against one endpoint and prints one JSON
object with what each returned. Failures of an operation are reported in the JSON (the
test asserts on them); only a failure to connect exits non-zero.
"""

import argparse
import asyncio
import json
import sys
import time

from asyncua import Client, ua
from asyncua.crypto.security_policies import (
    SecurityPolicyAes128Sha256RsaOaep,
    SecurityPolicyAes256Sha256RsaPss,
    SecurityPolicyBasic256Sha256,
)

TAGS_NS = "urn:smart-connector:tags"

POLICIES = {
    "basic256sha256": SecurityPolicyBasic256Sha256,
    "aes128-sha256-rsaoaep": SecurityPolicyAes128Sha256RsaOaep,
    "aes256-sha256-rsapss": SecurityPolicyAes256Sha256RsaPss,
}
MODES = {
    "sign": ua.MessageSecurityMode.Sign,
    "sign-and-encrypt": ua.MessageSecurityMode.SignAndEncrypt,
}


def status_name(code):
    return ua.StatusCode(code).name if not isinstance(code, ua.StatusCode) else code.name


def plain(v):
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    return str(v)


async def browse(client, ns):
    """Walks down from Objects to the first tag: the path of browse names."""
    node = client.nodes.objects
    path = []
    for _ in range(8):
        children = await node.get_children()
        named = [(await c.read_browse_name(), c) for c in children]
        ours = [(b, c) for b, c in named if b.NamespaceIndex == ns]
        if not ours:
            break
        b, c = sorted(ours, key=lambda x: x[0].Name)[0]
        path.append(b.Name)
        node = c
        if await c.read_node_class() == ua.NodeClass.Variable:
            return {"path": path, "node_id": c.nodeid.to_string()}
    return {"path": path, "node_id": None}


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--policy")
    p.add_argument("--mode", default="sign-and-encrypt")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--uri", default="urn:example:asyncua-test")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument(
        "--x509-user",
        action="store_true",
        help="identify as the user of the --cert certificate (an X509 user token)",
    )
    p.add_argument("--browse", action="store_true")
    p.add_argument("--service-level", action="store_true")
    p.add_argument("--redundancy", action="store_true")
    p.add_argument("--read", action="append", default=[])
    p.add_argument("--write", action="append", default=[], help="TAG=JSON value")
    p.add_argument("--subscribe", help="TAG:N, wait for N data changes")
    p.add_argument("--many-items", type=int, help="monitor this many items in one subscription")
    p.add_argument(
        "--modes",
        help="TAG: count notifications under an absolute deadband, with monitoring "
        "disabled/re-enabled and publishing disabled/re-enabled",
    )
    p.add_argument(
        "--watch-service-level",
        action="store_true",
        help="subscribe to Server.ServiceLevel and print each value as a JSON line, until killed",
    )
    a = p.parse_args()

    client = Client(url=a.url, timeout=10)
    client.application_uri = a.uri
    if a.policy:
        await client.set_security(
            POLICIES[a.policy], a.cert, a.key, mode=MODES[a.mode]
        )
    if a.x509_user:
        await client.load_client_certificate(a.cert)
        await client.load_private_key(a.key)
    if a.user:
        client.set_user(a.user)
        client.set_password(a.password or "")
    out = {}
    async with client:
        ns = await client.get_namespace_index(TAGS_NS)
        if a.service_level:
            level = await client.nodes.server.get_child(["0:ServiceLevel"])
            out["service_level"] = await level.read_value()
        if a.redundancy:
            red = await client.nodes.server.get_child(["0:ServerRedundancy"])
            support = await (await red.get_child(["0:RedundancySupport"])).read_value()
            uris = await (await red.get_child(["0:ServerUriArray"])).read_value()
            out["redundancy"] = {"support": int(support), "server_uris": list(uris)}
        if a.browse:
            out["browse"] = await browse(client, ns)
        reads = {}
        for tag in a.read:
            node = client.get_node(ua.NodeId(tag, ns))
            try:
                dv = await node.read_data_value(raise_on_bad_status=False)
                reads[tag] = {
                    "value": plain(dv.Value.Value if dv.Value else None),
                    "status": dv.StatusCode_.name,
                    "source_timestamp": dv.SourceTimestamp.timestamp()
                    if dv.SourceTimestamp
                    else None,
                    "data_type": (await node.read_data_type()).to_string(),
                }
            except ua.UaStatusCodeError as e:
                reads[tag] = {"status": type(e).__name__}
        if reads:
            out["read"] = reads
        writes = {}
        for w in a.write:
            tag, value = w.split("=", 1)
            value = json.loads(value)
            node = client.get_node(ua.NodeId(tag, ns))
            variant = (
                ua.Variant(value, ua.VariantType.Boolean)
                if isinstance(value, bool)
                else ua.Variant(float(value), ua.VariantType.Double)
            )
            started = time.monotonic()
            try:
                await node.write_value(ua.DataValue(variant))
                writes[tag] = {"status": "Good"}
            except ua.UaStatusCodeError as e:
                writes[tag] = {"status": type(e).__name__}
            writes[tag]["seconds"] = round(time.monotonic() - started, 3)
        if writes:
            out["write"] = writes
        if a.subscribe:
            tag, n = a.subscribe.rsplit(":", 1)
            n = int(n)
            got = []
            done = asyncio.Event()

            class Handler:
                def datachange_notification(self, node, val, data):
                    dv = data.monitored_item.Value
                    got.append(
                        {
                            "value": plain(val),
                            "status": dv.StatusCode_.name,
                            "source_timestamp": dv.SourceTimestamp.timestamp()
                            if dv.SourceTimestamp
                            else None,
                        }
                    )
                    if len(got) >= n:
                        done.set()

            sub = await client.create_subscription(50, Handler())
            await sub.subscribe_data_change(client.get_node(ua.NodeId(tag, ns)))
            try:
                await asyncio.wait_for(done.wait(), 20)
            except asyncio.TimeoutError:
                pass
            await sub.delete()
            out["subscribe"] = got
        if a.modes:
            node = client.get_node(ua.NodeId(a.modes, ns))

            class Count:
                def __init__(self):
                    self.n = 0

                def datachange_notification(self, node, val, data):
                    self.n += 1

            async def over(counter, seconds):
                counter.n = 0
                await asyncio.sleep(seconds)
                return counter.n

            wide = Count()
            sub_wide = await client.create_subscription(50, wide)
            await sub_wide.deadband_monitor(node, 1e12)
            await asyncio.sleep(0.3)  # the initial value
            modes = {"deadband_1e12": await over(wide, 1.0)}
            await sub_wide.delete()
            plain_count = Count()
            sub = await client.create_subscription(50, plain_count)
            await sub.subscribe_data_change(node)
            modes["reporting"] = await over(plain_count, 1.0)
            await sub.set_monitoring_mode(ua.MonitoringMode.Disabled)
            await asyncio.sleep(0.3)
            modes["disabled"] = await over(plain_count, 1.0)
            await sub.set_monitoring_mode(ua.MonitoringMode.Reporting)
            modes["reporting_again"] = await over(plain_count, 1.0)
            await sub.set_publishing_mode(False)
            await asyncio.sleep(0.3)
            modes["publishing_off"] = await over(plain_count, 1.0)
            await sub.set_publishing_mode(True)
            modes["publishing_on"] = await over(plain_count, 1.0)
            await sub.delete()
            out["modes"] = modes
        if a.watch_service_level:
            seen = asyncio.Queue()

            class Levels:
                def datachange_notification(self, node, val, data):
                    seen.put_nowait(val)

            sub = await client.create_subscription(20, Levels())
            await sub.subscribe_data_change(
                await client.nodes.server.get_child(["0:ServiceLevel"])
            )
            while True:
                v = await seen.get()
                print(json.dumps({"service_level": v}), flush=True)
        if a.many_items:
            sub = await client.create_subscription(500, None)
            params = ua.CreateMonitoredItemsParameters()
            params.SubscriptionId = sub.subscription_id
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            tag = a.read[0] if a.read else "Feeder01.Meter1.kW"
            for i in range(a.many_items):
                req = ua.MonitoredItemCreateRequest()
                req.ItemToMonitor = ua.ReadValueId()
                req.ItemToMonitor.NodeId = ua.NodeId(tag, ns)
                req.ItemToMonitor.AttributeId = ua.AttributeIds.Value
                req.MonitoringMode = ua.MonitoringMode.Reporting
                mparams = ua.MonitoringParameters()
                mparams.ClientHandle = i + 1
                mparams.SamplingInterval = 0
                mparams.QueueSize = 1
                mparams.DiscardOldest = True
                req.RequestedParameters = mparams
                params.ItemsToCreate.append(req)
            counts = {}
            try:
                results = await sub.server.create_monitored_items(params)
                for r in results:
                    counts[r.StatusCode.name] = counts.get(r.StatusCode.name, 0) + 1
            except Exception as e:  # a refusal of the whole request, whatever its form
                name = type(e).__name__
                counts[name if name.startswith("Bad") else "Bad:" + name] = a.many_items
            out["many_items"] = counts
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
