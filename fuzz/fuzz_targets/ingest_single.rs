//! `POST /v1/events`' body checks (`ingest::prepare`: strict parse, bare v1
//! or envelope, schema, verify or seal) on arbitrary bytes, as an
//! anonymous and as an authenticated caller.
//!
//! Must hold: see `intentproof_fuzz::check_prepared`.
#![no_main]

use intentproof_gateway::ingest::Caller;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    intentproof_fuzz::with_ingest(|ctx| {
        for caller in [Caller::Anonymous, Caller::Authenticated] {
            intentproof_fuzz::check_prepared(ctx, data, caller);
        }
    });
});
