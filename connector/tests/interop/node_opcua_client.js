// node-opcua's client against a connector's OPC UA server. Driven by
// connector/tests/opcua_node.rs, which installs the pinned node-opcua-client
// (package.json here) and points NODE_PATH at it.
//
//   node node_opcua_client.js URL PKI_DIR TAG WRITABLE_TAG
//
// Browses from Objects to the Tags folder and down to TAG, reads it, subscribes to it
// until three data changes arrived, writes `true` to WRITABLE_TAG, and prints one line
// `RESULT {json}` on stdout (node-opcua logs its own lines there too).
"use strict";

const {
  OPCUAClient,
  AttributeIds,
  ClientMonitoredItem,
  ClientSubscription,
  DataType,
  MessageSecurityMode,
  SecurityPolicy,
  TimestampsToReturn,
} = require("node-opcua-client");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");

const [url, pkiDir, tag, writable] = process.argv.slice(2);
const NAMESPACE = "urn:smart-connector:tags";
// Only there to fail rather than hang.
const HANG_MS = 30000;

async function children(session, nodeId) {
  const r = await session.browse(nodeId);
  if (!r.statusCode.isGood()) {
    throw new Error(`browse ${nodeId}: ${r.statusCode.toString()}`);
  }
  return r.references;
}

async function child(session, parent, want) {
  const refs = await children(session, parent);
  const hit = refs.find(want);
  if (!hit) {
    const seen = refs.map((r) => `${r.browseName.toString()} ${r.nodeId.toString()}`);
    throw new Error(`nothing wanted under ${parent}: ${JSON.stringify(seen)}`);
  }
  return hit;
}

function plain(dv) {
  const v = dv.value.value;
  return {
    value: typeof v === "bigint" ? v.toString() : Array.isArray(v) ? v.map(String) : v,
    type: DataType[dv.value.dataType],
    status: dv.statusCode.name,
    source_timestamp: dv.sourceTimestamp ? dv.sourceTimestamp.toISOString() : null,
  };
}

async function main() {
  // Its own certificate store in the test's directory, not in the user's home.
  const clientCertificateManager = new OPCUACertificateManager({
    rootFolder: pkiDir,
    automaticallyAcceptUnknownCertificate: true,
  });
  const client = OPCUAClient.create({
    applicationName: "node-opcua interop",
    clientCertificateManager,
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 3, initialDelay: 200, maxDelay: 1000 },
  });
  await client.connect(url);
  const session = await client.createSession(); // anonymous
  const out = {};

  const namespaces = await session.readNamespaceArray();
  const ns = namespaces.indexOf(NAMESPACE);
  if (ns < 0) throw new Error(`no ${NAMESPACE} in ${JSON.stringify(namespaces)}`);
  out.namespace_index = ns;

  // Objects (i=85) -> Tags -> the folders of the dotted name -> the tag.
  const root = await child(session, "i=85", (r) => r.browseName.name === "Tags");
  out.tags_folder = { browse_name: root.browseName.toString(), node_id: root.nodeId.toString() };
  const parts = tag.split(".");
  let at = root.nodeId;
  const path = [];
  for (let i = 1; i < parts.length; i++) {
    const folder = `${parts.slice(0, i).join(".")}/`;
    const hit = await child(session, at, (r) => r.nodeId.namespace === ns && r.nodeId.value === folder);
    path.push(hit.browseName.toString());
    at = hit.nodeId;
  }
  const leaf = await child(session, at, (r) => r.nodeId.namespace === ns && r.nodeId.value === tag);
  path.push(leaf.browseName.toString());
  out.browse_path = path;
  out.tag_node_id = leaf.nodeId.toString();

  out.read = plain(await session.read({ nodeId: leaf.nodeId, attributeId: AttributeIds.Value }));
  const level = await session.read({ nodeId: "i=2267", attributeId: AttributeIds.Value });
  out.service_level = level.value.value;

  // Subscribe: three data changes.
  const sub = ClientSubscription.create(session, {
    requestedPublishingInterval: 100,
    requestedLifetimeCount: 100,
    requestedMaxKeepAliveCount: 10,
    maxNotificationsPerPublish: 100,
    publishingEnabled: true,
    priority: 10,
  });
  const item = ClientMonitoredItem.create(
    sub,
    { nodeId: leaf.nodeId, attributeId: AttributeIds.Value },
    { samplingInterval: 0, discardOldest: true, queueSize: 10 },
    TimestampsToReturn.Both,
  );
  out.changes = await new Promise((resolve, reject) => {
    const seen = [];
    const timer = setTimeout(
      () => reject(new Error(`only ${seen.length} data changes in ${HANG_MS} ms`)),
      HANG_MS,
    );
    item.on("changed", (dv) => {
      if (seen.length === 3) return; // until the subscription is terminated
      seen.push(plain(dv));
      if (seen.length === 3) {
        clearTimeout(timer);
        resolve(seen);
      }
    });
    item.on("err", (e) => reject(new Error(`monitored item: ${e}`)));
  });
  await sub.terminate();

  // Write: the status comes back once the Primary applied it (or a Bad code).
  const writableId = `ns=${ns};s=${writable}`;
  const status = await session.write({
    nodeId: writableId,
    attributeId: AttributeIds.Value,
    value: { value: { dataType: DataType.Boolean, value: true } },
  });
  out.write = status.name;

  await session.close();
  await client.disconnect();
  process.stdout.write(`RESULT ${JSON.stringify(out)}\n`);
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`node-opcua client failed: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  },
);
