//! The wg-quick file parser on any text, then what `fastwire up` derives from an accepted file: the
//! device configuration and the macOS/Windows command plans (resolving nothing). Invariants: no panic;
//! every refusal names the file and line (`FILE:LINE: reason`) or the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match fastwire::config::parse("wg0.conf", &text) {
        Err(e) => assert!(e.starts_with("wg0.conf"), "an error without its file: {e}"),
        Ok(config) => {
            let resolve = |e: &fastwire::config::Endpoint| {
                format!("{}:{}", e.host, e.port)
                    .parse()
                    .or_else(|_| format!("[{}]:{}", e.host, e.port).parse())
                    .map_err(|_| "not a literal address".to_string())
            };
            let _ = config.device_update_with(resolve);
            let _ = fastwire::wgquick::dry_plans(&config, resolve);
        }
    }
});
