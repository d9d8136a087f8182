//! `intentproof verify FILE [--json] [--key [KEY_ID=]PUB]...`: offline
//! verification of a proof bundle (`.proof.tar.zst`, or a plain tar).
//!
//! Standard output is the reference verifier's human form (`✓ pass:
//! <reason>` / `✗ fail: <reason>`, then `- <finding>` lines), or with
//! `--json` the full report. In the human form, what exactly failed and the
//! warnings (what a pass does not vouch for) go to standard error.
//!
//! Exit status: 0 pass, 1 fail, 2 usage or I/O error (unreadable file or key).

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use intentproof_bundle::{ReadLimits, TrustedKey, VerifyOptions, parse_public_key_bytes, verify};
use intentproof_core::keys::InstanceKey;

/// Arguments of `intentproof verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The bundle: .proof.tar.zst or plain tar, or `-` for standard input.
    pub file: String,
    /// Print the machine-readable JSON report instead of the human form.
    #[arg(long)]
    pub json: bool,
    /// A public key to trust (repeatable): `PATH`, or `KEY_ID=PATH` to bind
    /// it to one key id. The file holds base64 or hex of the 32-byte key, the
    /// raw 32 bytes, a PEM `PUBLIC KEY`, or a key file from `keys new`. A key
    /// checks the manifest signature (required once any key is given) and
    /// events whose key the bundle does not carry; a key with an id must
    /// equal the bundle's `keys/<KEY_ID>.pub`.
    #[arg(long = "key", value_name = "[KEY_ID=]PUB")]
    pub keys: Vec<String>,
    /// Most bytes the archive may decompress to.
    #[arg(long, value_name = "BYTES", default_value_t = ReadLimits::default().max_total_bytes)]
    pub max_bytes: u64,
    /// Most members the archive may hold.
    #[arg(long, value_name = "N", default_value_t = ReadLimits::default().max_members)]
    pub max_members: usize,
}

/// Reads one `--key` argument.
fn trusted_key(arg: &str) -> Result<TrustedKey> {
    let (key_id, path) = if Path::new(arg).is_file() {
        (None, arg)
    } else {
        match arg.split_once('=') {
            Some((id, path)) if !id.is_empty() => (Some(id.to_owned()), path),
            _ => bail!("--key {arg}: no such file (use PATH or KEY_ID=PATH)"),
        }
    };
    let bytes = std::fs::read(path).with_context(|| format!("cannot read key file {path}"))?;
    let key = match parse_public_key_bytes(&bytes) {
        Ok(k) => k,
        Err(e) => {
            let text = String::from_utf8_lossy(&bytes);
            if text.trim_start().starts_with('{') {
                InstanceKey::from_key_file_text(&text)
                    .with_context(|| format!("key file {path} is not a key"))?
                    .verifying_key()
            } else {
                bail!("key file {path} is not an Ed25519 public key: {e}");
            }
        }
    };
    Ok(TrustedKey { key_id, key })
}

fn read_bundle(file: &str, limit: u64) -> Result<Vec<u8>> {
    // The compressed input is never larger than what it may decompress to
    // (plus zstd's framing); refuse a larger file before reading it.
    let cap = limit.saturating_add(1 << 20);
    let mut buf = Vec::new();
    if file == "-" {
        std::io::stdin()
            .lock()
            .take(cap + 1)
            .read_to_end(&mut buf)
            .context("cannot read standard input")?;
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("cannot read {file}"))?;
        f.take(cap + 1)
            .read_to_end(&mut buf)
            .with_context(|| format!("cannot read {file}"))?;
    }
    if buf.len() as u64 > cap {
        bail!("{file} is larger than --max-bytes ({limit}) allows");
    }
    Ok(buf)
}

/// Runs `intentproof verify`: `Ok(0)` pass, `Ok(1)` fail; `Err` for usage
/// and I/O errors (the caller prints it and exits 2).
pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    let trusted_keys = args
        .keys
        .iter()
        .map(|k| trusted_key(k))
        .collect::<Result<Vec<_>>>()?;
    let bytes = read_bundle(&args.file, args.max_bytes)?;
    let options = VerifyOptions {
        trusted_keys,
        limits: ReadLimits {
            max_total_bytes: args.max_bytes,
            max_members: args.max_members,
            max_member_bytes: args.max_bytes,
        },
        threads: 0,
    };
    let report = verify(&bytes, &options);
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", report.to_json())?;
    } else {
        out.write_all(report.human().as_bytes())?;
        if let Some(detail) = &report.detail {
            eprintln!("{}: {detail}", report.reason);
        }
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
    }
    out.flush()?;
    Ok(ExitCode::from(report.exit_code()))
}
