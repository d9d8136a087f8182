//! The daemon's TOML config on arbitrary text: parse and validate
//! (`Config::from_toml`), then the environment overrides (none set, which
//! validates again).
//!
//! Must hold: no panic; a config that loads validates again unchanged.
#![no_main]

use intentproof_gateway::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml(text, "fuzz.toml".as_ref()) else {
        return;
    };
    let again = config
        .clone()
        .apply_env(|_| None)
        .unwrap_or_else(|e| panic!("a loaded config does not validate again: {e}"));
    assert_eq!(again, config, "validating again changed the config");
});
