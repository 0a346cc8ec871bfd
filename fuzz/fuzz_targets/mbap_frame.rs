//! The connector's Modbus TCP (MBAP) request parser on arbitrary bytes: never panics, and a
//! frame it accepts is taken from the buffer's start and no longer than the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smart_connector::modbus::decode_request;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // A stream of frames, as a connection delivers them.
    while let Ok(Some((_frame, used))) = decode_request(rest) {
        assert!(
            used > 0 && used <= rest.len(),
            "used {used} of {}",
            rest.len()
        );
        rest = &rest[used..];
    }
});
