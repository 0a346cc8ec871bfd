//! `harness bare-modbus`: the stock tokio-modbus server the connector is compared with.

use super::runtime;
use anyhow::Result;
use harness::load::serve_bare;
use std::net::SocketAddr;
use std::process::ExitCode;
#[derive(Debug, clap::Args)]
pub struct BareModbusArgs {
    /// Address to serve Modbus TCP on (host:port).
    #[arg(long, default_value = "127.0.0.1:1503")]
    pub listen: SocketAddr,
    /// Worker threads of the server's runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// `harness bare-modbus`.
pub fn cmd_bare_modbus(a: BareModbusArgs) -> Result<ExitCode> {
    let BareModbusArgs { listen, threads } = a;
    runtime(threads)?.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        eprintln!("bare tokio-modbus server on {listen}");
        tokio::select! {
            r = serve_bare(listener) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
