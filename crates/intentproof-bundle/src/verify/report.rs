//! What [`verify`](super::verify()) returns: the [`Report`] (pass or fail,
//! findings, warnings, counts), the [`Attestation`] and the [`Verdict`],
//! with the human and JSON forms.

use serde::Serialize;

/// Pass or fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every check passed.
    Pass,
    /// A check failed; see [`Report::reason`].
    Fail,
}

/// What was checked, in numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Archive members (directories not counted).
    pub members: usize,
    /// Whether the input was zstd-compressed.
    pub compressed: bool,
    /// Event lines.
    pub events: usize,
    /// Events whose signature verified.
    pub events_signature_verified: usize,
    /// Events without a signature (legacy records; never counted as verified).
    pub events_unsigned: usize,
    /// Of the events, projections (`auditor` / `counterparty` profiles),
    /// whose `event_signature` is checked over their `content_hash`.
    pub events_projected: usize,
    /// Of the verified events, those verified only with a key carried in
    /// the bundle while the manifest signature was not checked.
    pub events_verified_with_unauthenticated_key: usize,
    /// Chains checked in events.jsonl.
    pub chains: usize,
    /// Attestation lines.
    pub attestations: usize,
    /// Events whose inclusion proof verified.
    pub inclusion_proofs_verified: usize,
    /// Events whose C2SP tlog-proof verified (`tlog-proofs.jsonl`).
    #[serde(skip_serializing_if = "is_zero")]
    pub tlog_proofs_verified: usize,
    /// Required witnesses (`--witness`) whose cosignature verified on
    /// every event's tlog-proof checkpoint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub witnesses_cosigned: Vec<String>,
    /// `absent`, `unchecked` (no key given), `valid`, or
    /// `valid_with_bundled_key` (a projection bundle's manifest, checked
    /// without a given key against the bundled key of its signer).
    pub manifest_signature: &'static str,
    /// The key id the manifest signature names, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_signer: Option<String>,
}

/// The process exit code of a bundle whose checks pass but that no given
/// key attests ([`Verdict::Unattested`]).
pub const EXIT_UNATTESTED: u8 = 3;

/// Whether a key the caller gave vouches for the bundle as a whole.
///
/// The checks of [`verify`](super::verify()) show that the bundle is consistent with
/// itself: every event's signature verifies with a key, the chains link,
/// the Merkle roots match the listed events. They cannot show that no
/// event was left out: whoever drops the last events of a chain,
/// recomputes `event_merkle_root` and the file hashes and prunes the
/// inclusion proofs has a bundle that is just as consistent. Only the
/// manifest signature binds the list of events (through the file hashes
/// and `event_merkle_root`) to its exporter, and only a key the caller
/// trusts (given, not carried in the bundle) makes that signature mean
/// anything: a forger re-signs with a key of his own and bundles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attestation {
    /// The checks passed and the manifest signature verified with a given
    /// key: its holder (the exporter) vouches that these are the events it
    /// exported, none added, changed or left out since.
    Attested,
    /// The checks passed, but the manifest carries no signature: anyone
    /// could have built the bundle, from fewer events than were recorded.
    ManifestUnsigned,
    /// The checks passed; the manifest is signed, but no key was given, so
    /// the signature was not checked (a forger signs with his own key).
    ManifestUnchecked,
    /// The checks passed; the manifest signature (of a projection bundle)
    /// verified only with the key the bundle itself carries, which nothing
    /// outside the bundle vouches for.
    BundledKeyOnly,
    /// A check failed ([`Report::reason`]): nothing is attested.
    Failed,
}

/// What the caller may conclude from a [`Report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The checks passed and a given key attests the bundle: exit 0.
    Attested,
    /// The checks passed, but no given key attests the bundle: the events
    /// shown verify, but events may have been left out. Exit
    /// [`EXIT_UNATTESTED`].
    Unattested,
    /// A check failed: exit 1.
    Fail,
}

impl Verdict {
    /// The process exit code: 0 attested, 1 fail, [`EXIT_UNATTESTED`]
    /// unattested.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Attested => 0,
            Verdict::Fail => 1,
            Verdict::Unattested => EXIT_UNATTESTED,
        }
    }
}

/// The outcome of [`verify`](super::verify()).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Pass or fail of the checks (the reference verifier's outcome; a pass
    /// does not say who vouches for the bundle: see [`Report::attestation`]).
    pub status: Status,
    /// `bundle.verify_pass` or the failing check's reason code.
    pub reason: String,
    /// Findings, in check order (the reference verifier's vocabulary).
    pub findings: Vec<String>,
    /// What exactly is wrong, for a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What a pass does not vouch for (e.g. no key given).
    pub warnings: Vec<String>,
    /// Counts.
    pub summary: Summary,
    /// Whether a given key vouches for the bundle as a whole.
    pub attestation: Attestation,
    /// What the caller may conclude: attested, unattested or fail.
    pub verdict: Verdict,
}

impl Report {
    /// Whether the bundle's checks passed (the reference verifier's pass:
    /// see [`Report::verdict`] for whether anyone vouches for it).
    pub fn passed(&self) -> bool {
        self.status == Status::Pass
    }

    /// The reference verifier's exit code: 0 pass, 1 fail. An unattested
    /// pass is 0 here; [`Verdict::exit_code`] is the one that tells.
    pub fn exit_code(&self) -> u8 {
        if self.passed() { 0 } else { 1 }
    }

    /// Whether the checks passed and a given key attests the bundle.
    pub fn attested(&self) -> bool {
        self.verdict == Verdict::Attested
    }

    /// Why nothing attests a bundle whose checks passed, in words; `None`
    /// when it is attested or failed.
    pub fn unattested_because(&self) -> Option<String> {
        let signer = |s: &Summary| {
            s.manifest_signer
                .as_deref()
                .map(|k| format!(" {k:?}"))
                .unwrap_or_default()
        };
        match self.attestation {
            Attestation::Attested | Attestation::Failed => None,
            Attestation::ManifestUnsigned => Some(
                "the manifest is unsigned, so nothing binds this list of events to an exporter"
                    .into(),
            ),
            Attestation::ManifestUnchecked => Some(format!(
                "the manifest is signed by key{} and no key was given to check it (anyone can \
                 sign with a key of their own)",
                signer(&self.summary)
            )),
            Attestation::BundledKeyOnly => Some(format!(
                "the manifest signature verifies only with the key{} the bundle itself carries, \
                 which nothing outside the bundle vouches for",
                signer(&self.summary)
            )),
        }
    }

    /// What verified, in words, e.g. `5 of 5 event signatures, 1 chain, 5
    /// inclusion proofs`.
    pub fn what_verified(&self) -> String {
        let s = &self.summary;
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut parts = vec![format!(
            "{} of {}",
            s.events_signature_verified,
            plural(s.events, "event signature", "event signatures")
        )];
        if s.chains > 0 {
            parts.push(plural(s.chains, "chain", "chains"));
        }
        if s.inclusion_proofs_verified > 0 {
            parts.push(plural(
                s.inclusion_proofs_verified,
                "inclusion proof",
                "inclusion proofs",
            ));
        }
        if s.tlog_proofs_verified > 0 {
            parts.push(plural(s.tlog_proofs_verified, "tlog-proof", "tlog-proofs"));
        }
        if !s.witnesses_cosigned.is_empty() {
            parts.push(format!("cosigned by {}", s.witnesses_cosigned.join(", ")));
        }
        parts.join(", ")
    }

    /// The verdict in the human form: [`Report::human`] for an attested or
    /// failed bundle; for an unattested one, `⚠ unattested: <what verified;
    /// why nothing attests the rest>`, then the findings, the last one
    /// `bundle.verify_unattested` instead of `bundle.verify_pass`.
    pub fn human_verdict(&self) -> String {
        let Some(why) = self.unattested_because() else {
            return self.human();
        };
        let mut out = format!(
            "⚠ unattested: {} verify, but {why}: events may have been left out. Pass --key \
             with the exporter's public key\n",
            self.what_verified()
        );
        for f in &self.findings {
            out.push_str("- ");
            out.push_str(if f == "bundle.verify_pass" {
                "bundle.verify_unattested"
            } else {
                f
            });
            out.push('\n');
        }
        out
    }

    /// The human form: `✓ pass: <reason>` or `✗ fail: <reason>`, then one
    /// `- <finding>` line each. Detail and warnings are not part of it
    /// (the CLI prints them on standard error).
    pub fn human(&self) -> String {
        let mut out = String::with_capacity(64 + self.findings.len() * 32);
        out.push_str(match self.status {
            Status::Pass => "✓ pass: ",
            Status::Fail => "✗ fail: ",
        });
        out.push_str(&self.reason);
        out.push('\n');
        for f in &self.findings {
            out.push_str("- ");
            out.push_str(f);
            out.push('\n');
        }
        out
    }

    /// The machine-readable form (pretty JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| {
            format!(
                "{{\"status\":\"fail\",\"reason\":\"report.serialize_failed\",\"detail\":{:?}}}",
                e.to_string()
            )
        })
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
