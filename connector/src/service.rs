//! Answers one Modbus request from the register image, or forwards a write to the
//! engine and waits for the Primary's verdict. Framing is done before (see `modbus`):
//! everything that reaches this module has valid quantities and lengths.

use crate::authz::{Operation, Rights, Space};
use crate::config::ModbusConfig;
use crate::engine::{WriteReply, WriteRequest};
use crate::image::RegisterImage;
use crate::image_slot::ImageSlot;
use crate::lifecycle::Lifecycle;
use crate::map::{Bank, Cell, RegisterMap};
use crate::metrics::Metrics;
use crate::modbus::{ExceptionCode, Request, RequestFrame, encode_exception};
use crate::registers::{STATUS_REGISTERS, decode_write};
use bytes::BytesMut;
use po_protocol::{TagId, TagKind, Value};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug)]
pub struct ModbusService {
    /// The image to answer from: the status block alone until the catalogue arrives.
    images: Arc<ImageSlot>,
    writes: mpsc::Sender<WriteRequest>,
    read_only: bool,
    write_timeout: Duration,
    metrics: Arc<Metrics>,
    /// Counts writes in progress for a drain (`None` in benches and tests).
    lifecycle: Option<Arc<Lifecycle>>,
}

impl ModbusService {
    pub fn new(
        images: Arc<ImageSlot>,
        writes: mpsc::Sender<WriteRequest>,
        config: &ModbusConfig,
        write_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> ModbusService {
        ModbusService {
            images,
            writes,
            read_only: config.read_only,
            write_timeout,
            metrics,
            lifecycle: None,
        }
    }

    /// Counts writes in progress in `lifecycle`, so a drain can wait for them.
    pub fn with_lifecycle(mut self, lifecycle: Arc<Lifecycle>) -> ModbusService {
        self.lifecycle = Some(lifecycle);
        self
    }

    /// The image requests are answered from now.
    pub fn image(&self) -> &Arc<RegisterImage> {
        self.images.current()
    }

    /// Appends the response to `frame` to `out`; `rights` are the connection's (plain
    /// Modbus: [`Rights::unrestricted`]).
    pub async fn handle(&self, frame: RequestFrame, rights: &Rights, out: &mut BytesMut) {
        self.metrics.modbus_requests.fetch_add(1, Relaxed);
        let tid = frame.transaction_id;
        let unit = frame.unit_id;
        let function = frame.function;
        let (image, starting) = self.images.current_and_starting();
        let image = image.clone();
        let result = match (frame.request, image.map().bank_for(unit)) {
            (Err(code), _) => Err(code),
            (Ok(_), None) => Err(ExceptionCode::GatewayTargetFailedToRespond),
            // Before the catalogue only the status block exists: any other address is
            // "the device behind the gateway did not answer (yet)", which masters retry,
            // not "no such address", which they may take as a configuration error.
            (Ok(req), Some(_)) if starting && !reads_status_only(&req) => {
                Err(ExceptionCode::GatewayTargetFailedToRespond)
            }
            // Draining: the writes already forwarded finish; a new one is for the peer
            // connector (the status block says "draining").
            (Ok(req), Some(_)) if req.writes() && image.is_draining() => {
                Err(ExceptionCode::GatewayTargetFailedToRespond)
            }
            (Ok(req), Some(bank)) if !authorized(rights, image.map(), bank, &req) => {
                self.metrics.modbus_refused_role.fetch_add(1, Relaxed);
                tracing::debug!(role = %rights.role, unit, function, "Modbus request refused: not allowed for the role");
                Err(ExceptionCode::IllegalFunction)
            }
            (Ok(req), Some(bank)) => {
                self.serve(&image, bank, tid, unit, function, req, out)
                    .await
            }
        };
        if let Err(code) = result {
            self.metrics.count_exception(code as u8);
            encode_exception(tid, unit, function, code, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn serve(
        &self,
        image: &RegisterImage,
        bank: &Bank,
        tid: u16,
        unit: u8,
        function: u8,
        req: Request,
        out: &mut BytesMut,
    ) -> Result<(), ExceptionCode> {
        use crate::modbus::{encode_read_bits, encode_read_registers, encode_write_echo};
        match req {
            Request::ReadHoldingRegisters { addr, qty }
            | Request::ReadInputRegisters { addr, qty } => {
                let mut regs = [0u16; 125];
                let regs = &mut regs[..qty as usize];
                read(image, bank, addr, regs)?;
                encode_read_registers(tid, unit, function, regs, out);
            }
            Request::ReadCoils { addr, qty } | Request::ReadDiscreteInputs { addr, qty } => {
                let mut bits = [false; 2000];
                let bits = &mut bits[..qty as usize];
                if !image.read_bits(bank, addr, bits) {
                    return Err(ExceptionCode::IllegalDataAddress);
                }
                encode_read_bits(tid, unit, function, bits, out);
            }
            Request::WriteSingleRegister { addr, value } => {
                self.write_registers(image, bank, addr, &[value]).await?;
                encode_write_echo(tid, unit, function, addr, value, out);
            }
            Request::WriteMultipleRegisters { addr, values } => {
                self.write_registers(image, bank, addr, &values).await?;
                encode_write_echo(tid, unit, function, addr, values.len() as u16, out);
            }
            Request::WriteSingleCoil { addr, value } => {
                self.write_coils(image, bank, addr, &[value]).await?;
                encode_write_echo(
                    tid,
                    unit,
                    function,
                    addr,
                    if value { 0xFF00 } else { 0 },
                    out,
                );
            }
            Request::WriteMultipleCoils { addr, values } => {
                self.write_coils(image, bank, addr, &values).await?;
                encode_write_echo(tid, unit, function, addr, values.len() as u16, out);
            }
            Request::ReadWriteMultipleRegisters {
                read_addr,
                read_qty,
                write_addr,
                values,
            } => {
                // Check the read range first so a failed read does not follow a write.
                if u32::from(read_addr) + u32::from(read_qty) > bank.register_end() {
                    return Err(ExceptionCode::IllegalDataAddress);
                }
                self.write_registers(image, bank, write_addr, &values)
                    .await?;
                let mut regs = [0u16; 125];
                let regs = &mut regs[..read_qty as usize];
                read(image, bank, read_addr, regs)?;
                encode_read_registers(tid, unit, function, regs, out);
            }
        }
        Ok(())
    }

    /// Works out which tags a register write sets; every register must belong to a
    /// writable tag and every tag must be written whole.
    fn plan_register_write(
        &self,
        image: &RegisterImage,
        bank: &Bank,
        addr: u16,
        values: &[u16],
    ) -> Result<Vec<(TagId, Value)>, ExceptionCode> {
        if self.read_only {
            return Err(ExceptionCode::IllegalFunction);
        }
        let map = image.map();
        if u32::from(addr) + values.len() as u32 > bank.register_end() {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let mut plan = Vec::new();
        let mut i = 0usize;
        while i < values.len() {
            let Some(Cell::Value { point, word: 0 }) = bank.cell(addr + i as u16) else {
                return Err(ExceptionCode::IllegalDataAddress);
            };
            let p = map.point(point);
            let n = p.words as usize;
            if !p.writable || i + n > values.len() {
                return Err(ExceptionCode::IllegalDataAddress);
            }
            let value = decode_write(p.kind, &values[i..i + n], map.word_order())
                .map_err(|_| ExceptionCode::IllegalDataValue)?;
            plan.push((p.tag, value));
            i += n;
        }
        Ok(plan)
    }

    async fn write_registers(
        &self,
        image: &RegisterImage,
        bank: &Bank,
        addr: u16,
        values: &[u16],
    ) -> Result<(), ExceptionCode> {
        let plan = self.plan_register_write(image, bank, addr, values)?;
        self.apply(image, plan).await
    }

    async fn write_coils(
        &self,
        image: &RegisterImage,
        bank: &Bank,
        addr: u16,
        values: &[bool],
    ) -> Result<(), ExceptionCode> {
        if self.read_only {
            return Err(ExceptionCode::IllegalFunction);
        }
        let map = image.map();
        if u32::from(addr) + values.len() as u32 > bank.coil_end() {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let mut plan = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            let Some(Some(point)) = bank.coil(addr + i as u16) else {
                return Err(ExceptionCode::IllegalDataAddress);
            };
            let p = map.point(point);
            if !p.writable || p.kind != TagKind::Digital {
                return Err(ExceptionCode::IllegalDataAddress);
            }
            plan.push((p.tag, Value::Digital(*v)));
        }
        self.apply(image, plan).await
    }

    /// Sends the writes to the engine in order and waits for every verdict.
    async fn apply(
        &self,
        image: &RegisterImage,
        plan: Vec<(TagId, Value)>,
    ) -> Result<(), ExceptionCode> {
        // Counted until answered: a drain waits for it (writes only; reads need no count).
        let _answering = self.lifecycle.as_ref().map(|l| l.write());
        let deadline = image.clock().now() + self.write_timeout;
        let mut replies = Vec::with_capacity(plan.len());
        for (tag, value) in plan {
            let (reply, rx) = oneshot::channel();
            let req = WriteRequest {
                tag,
                value,
                deadline,
                reply,
            };
            if self.writes.send(req).await.is_err() {
                return Err(ExceptionCode::ServerDeviceFailure);
            }
            replies.push(rx);
        }
        let mut result = Ok(());
        for rx in replies {
            let r = match rx.await {
                Ok(WriteReply::Applied) => Ok(()),
                Ok(WriteReply::TimedOut) => Err(ExceptionCode::GatewayTargetFailedToRespond),
                Ok(WriteReply::Refused(_)) | Err(_) => Err(ExceptionCode::ServerDeviceFailure),
            };
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

fn read(
    image: &RegisterImage,
    bank: &Bank,
    addr: u16,
    regs: &mut [u16],
) -> Result<(), ExceptionCode> {
    if u32::from(addr) + regs.len() as u32 > bank.register_end()
        || !image.read_registers(bank, addr, regs)
    {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    Ok(())
}

/// Whether `req` only reads the status block (all a starting connector can answer).
fn reads_status_only(req: &Request) -> bool {
    match req {
        Request::ReadHoldingRegisters { addr, qty } | Request::ReadInputRegisters { addr, qty } => {
            u32::from(*addr) + u32::from(*qty) <= u32::from(STATUS_REGISTERS)
        }
        _ => false,
    }
}

/// Whether `rights` allow every address `req` reads and writes (Modbus/TCP Security).
fn authorized(rights: &Rights, map: &RegisterMap, bank: &Bank, req: &Request) -> bool {
    use Operation::{Read, Write};
    use Space::{Coils, Registers};
    let ok = |op, space, addr, qty: usize| {
        rights.permits(
            op,
            map,
            bank,
            space,
            addr,
            u16::try_from(qty).unwrap_or(u16::MAX),
        )
    };
    match req {
        Request::ReadHoldingRegisters { addr, qty } | Request::ReadInputRegisters { addr, qty } => {
            ok(Read, Registers, *addr, usize::from(*qty))
        }
        Request::ReadCoils { addr, qty } | Request::ReadDiscreteInputs { addr, qty } => {
            ok(Read, Coils, *addr, usize::from(*qty))
        }
        Request::WriteSingleRegister { addr, .. } => ok(Write, Registers, *addr, 1),
        Request::WriteMultipleRegisters { addr, values } => {
            ok(Write, Registers, *addr, values.len())
        }
        Request::WriteSingleCoil { addr, .. } => ok(Write, Coils, *addr, 1),
        Request::WriteMultipleCoils { addr, values } => ok(Write, Coils, *addr, values.len()),
        Request::ReadWriteMultipleRegisters {
            read_addr,
            read_qty,
            write_addr,
            values,
        } => {
            ok(Read, Registers, *read_addr, usize::from(*read_qty))
                && ok(Write, Registers, *write_addr, values.len())
        }
    }
}
