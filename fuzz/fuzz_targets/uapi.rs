//! The UAPI protocol as the daemon parses it from any local program: `set=1` bodies line by line, the
//! answers our client parses (`get=1`, `fastwire-stats=1`, errno lines). Invariants: no panic; a `set`
//! that parses formats back to text that parses to the same update.
#![no_main]

use fastwire::uapi::protocol::{SetParser, format_set, parse_set, parse_set_answer, parse_stats};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parser = SetParser::new();
    let mut ok = true;
    for line in text.split('\n').take(10_000) {
        if parser.feed_line(line).is_err() {
            ok = false;
            break;
        }
    }
    if ok {
        let update = parser.finish();
        let again = parse_set(&format_set(&update)).expect("what we format, we parse");
        assert_eq!(again, update, "set round trip");
    }
    let _ = parse_set(&text);
    let _ = parse_stats(&text);
    let _ = parse_set_answer(&text);
    let _ = fastwire::uapi::protocol::parse_get(&text);
});
