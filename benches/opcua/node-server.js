// node-opcua's server serving VARIABLES Double variables that all change every PERIOD_MS:
// the reference `harness bench` compares the connector's OPC UA face with (docs/performance.md).
// Usage: node node-server.js --port P --variables N [--period-ms 1000]
// Prints "listening opc.tcp://127.0.0.1:P/ N" once it serves, then runs until killed.
"use strict";
const { OPCUAServer } = require("node-opcua-server");
const { DataType } = require("node-opcua-variant");
const { StatusCodes } = require("node-opcua-status-code");

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  if (i < 0) {
    if (fallback === undefined) {
      console.error(`node-server.js: ${name} is required`);
      process.exit(2);
    }
    return fallback;
  }
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v <= 0) {
    console.error(`node-server.js: ${name} wants a positive integer, not ${process.argv[i + 1]}`);
    process.exit(2);
  }
  return v;
}

const port = arg("--port");
const count = arg("--variables");
const periodMs = arg("--period-ms", 1000);
// Folders of this many variables, like the connector's per-device folders: no node has
// 100 000 references to browse.
const PER_FOLDER = 1000;

async function main() {
  const server = new OPCUAServer({
    port,
    hostname: "127.0.0.1",
    resourcePath: "/",
    maxConnectionsPerEndpoint: 64,
    // The same ceilings as the connector's defaults (docs/opcua.md): a message of 16 MiB
    // and 100 000 monitored items per call.
    maxMessageSize: 16 * 1024 * 1024,
    maxChunkCount: 16 * 1024 * 1024 / 65535 + 1,
    serverCapabilities: {
      maxSessions: 64,
      maxArrayLength: 100000,
      maxMonitoredItems: 1000000,
      maxMonitoredItemsPerSubscription: 1000000,
      maxMonitoredItemsQueueSize: 100000,
      operationLimits: {
        maxMonitoredItemsPerCall: 100000,
        maxNodesPerBrowse: 100000,
        maxNodesPerRead: 100000,
      },
    },
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.getOwnNamespace();
  const tags = ns.addFolder(addressSpace.rootFolder.objects, { browseName: "Tags" });
  const variables = [];
  let folder = null;
  for (let i = 0; i < count; i++) {
    if (i % PER_FOLDER === 0) {
      folder = ns.addFolder(tags, { browseName: `Block${i / PER_FOLDER}` });
    }
    variables.push(
      ns.addVariable({
        organizedBy: folder,
        browseName: `Tag${i}`,
        nodeId: `s=Tag${i}`,
        dataType: "Double",
        value: { dataType: DataType.Double, value: 0 },
      }),
    );
  }
  let tick = 0;
  setInterval(() => {
    tick += 1;
    const now = new Date();
    for (let i = 0; i < variables.length; i++) {
      // A value of its own per variable and tick: every variable changes every period.
      variables[i].setValueFromSource(
        { dataType: DataType.Double, value: tick + i / 1e6 },
        StatusCodes.Good,
        now,
      );
    }
  }, periodMs);
  await server.start();
  console.log(`listening opc.tcp://127.0.0.1:${port}/ ${count}`);
  for (const sig of ["SIGTERM", "SIGINT"]) {
    process.on(sig, async () => {
      await server.shutdown(0);
      process.exit(0);
    });
  }
}

main().catch((e) => {
  console.error(`node-server.js: ${e.stack || e}`);
  process.exit(1);
});
