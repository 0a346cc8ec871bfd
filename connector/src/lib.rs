//! The Smart Connector (see issue 3): sources and failover, register image, Modbus TCP server.
