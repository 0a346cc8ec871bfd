//! The harness's scenario parser (and validation) on arbitrary text: never panics; every
//! refusal names the file.
#![no_main]

use harness::scenario::Scenario;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Scenario::parse(text, "fuzz.toml") {
        assert!(e.to_string().contains("fuzz.toml"), "{e}");
    }
});
