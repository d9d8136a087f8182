//! [`Pins`]: the tool definitions a server was pinned to, kept per server
//! in the data dir, and the changes seen since.
//!
//! # The file
//!
//! `<data dir>/pins/<server>.json` (directory 0700, file 0600), pretty
//! JSON:
//!
//! ```json
//! {
//!   "server": "payments",
//!   "pinned_at": "2026-12-07T10:00:00.000Z",
//!   "pinned": {"refund": {"digest": "sha256:…", "definition": {…}, "at": "…", "approved_by": null}},
//!   "changed": {"refund": {"digest": "sha256:…", "definition": {…}, "at": "…", "approved_by": null}}
//! }
//! ```
//!
//! `pinned` holds the approved definition of each tool (the first one
//! listed, or the last one an operator approved); `changed` the latest
//! definition listed that is not the pinned one (or a tool that appeared
//! after pinning), until it is approved or the server lists the pinned one
//! again. `pinned_at` is set by the server's first listing: a tool first
//! seen after it is a change, even when the first listing was empty.
//!
//! The stdio gateway (`intentproof mcp`), the daemon's `/mcp/<name>`
//! sessions and `intentproof tools approve` (through the daemon) may share
//! one file: every change is a read-modify-write under an exclusive lock
//! on `<server>.json.lock`, and the file is replaced atomically (temp
//! file, fsync, rename). A reader re-reads it when its modification time
//! moves, so an approval made elsewhere is seen at the next list or call
//! of that tool.
//!
//! # Cost
//!
//! A `tools/call` of a tool whose last listed definition is the pinned one
//! costs one map lookup under a mutex (no I/O); only a call of a changed
//! tool checks the file (one `stat`, a read when it moved). A `tools/list`
//! answer costs a `stat`, one digest per tool, and a write when something
//! new was seen.
//!
//! What it does not do: decide anything (`intentproof_policy::guard`
//! does), record events (the recorder turns what [`Pins::observe`] reports
//! into events), or keep removed tools apart (a tool the server stops
//! listing keeps its pin).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use intentproof_core::format_rfc3339_millis;
use intentproof_policy::guard::ToolPin;
use intentproof_policy::guard::tools::{changed_fields, definition, digest};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest pins file read, in bytes (about a thousand large tools).
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Most tools pinned per server.
pub const MAX_TOOLS: usize = 4_096;

/// One tool definition as kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    /// [`digest`] of the definition.
    pub digest: String,
    /// The definition (the fields the digest covers).
    pub definition: Value,
    /// When it was pinned, approved or first seen (RFC 3339).
    pub at: String,
    /// Who approved it (a pin made by the first listing has none).
    #[serde(default)]
    pub approved_by: Option<String>,
}

/// The pins file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PinFile {
    /// The server's name.
    pub server: String,
    /// When the server's first listing was pinned.
    #[serde(default)]
    pub pinned_at: Option<String>,
    /// Approved definitions.
    #[serde(default)]
    pub pinned: BTreeMap<String, Pin>,
    /// Definitions listed since that are not approved.
    #[serde(default)]
    pub changed: BTreeMap<String, Pin>,
}

/// A definition that differs from its pin, newly seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The tool.
    pub name: String,
    /// The pinned digest (`None`: the tool appeared after pinning).
    pub old_digest: Option<String>,
    /// The digest listed now.
    pub new_digest: String,
    /// The definition fields that differ.
    pub fields: Vec<&'static str>,
}

/// What one `tools/list` page taught.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Tools pinned now (first listing): name and digest.
    pub pinned: Vec<(String, String)>,
    /// Changes not seen before.
    pub changed: Vec<Change>,
}

/// An approval's effect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approved {
    /// The tool.
    pub name: String,
    /// The digest it was pinned to before (`None`: a new tool).
    pub old_digest: Option<String>,
    /// The digest approved.
    pub new_digest: String,
}

#[derive(Debug)]
struct Cached {
    file: PinFile,
    /// The file's modification time when read (`None`: no file).
    modified: Option<SystemTime>,
}

/// The pins of one server.
#[derive(Debug)]
pub struct Pins {
    path: PathBuf,
    server: String,
    cached: Mutex<Cached>,
}

/// The correlation of a server's pin events (pinned, changed, approved):
/// one flow holds the server's whole pin history.
pub fn correlation(server: &str) -> String {
    format!("tools:{server}")
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn now() -> String {
    format_rfc3339_millis(SystemTime::now())
}

/// Whether a server name can name a file (the config's server names can).
fn file_name_ok(server: &str) -> bool {
    !server.is_empty()
        && server.len() <= 128
        && server
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !server.starts_with('.')
}

impl Pins {
    /// The pins of `server`, kept under `dir` (created 0700 when first
    /// written). Fails on a server name that cannot be a file name, or a
    /// file that exists and cannot be read.
    pub fn open(dir: &Path, server: &str) -> Result<Pins, String> {
        if !file_name_ok(server) {
            return Err(format!(
                "server name {server:?} cannot name a pins file: use letters, digits, '-', '_' and '.'"
            ));
        }
        let pins = Pins {
            path: dir.join(format!("{server}.json")),
            server: server.to_owned(),
            cached: Mutex::new(Cached {
                file: PinFile {
                    server: server.to_owned(),
                    ..PinFile::default()
                },
                modified: None,
            }),
        };
        pins.refresh(&mut pins.lock())?;
        Ok(pins)
    }

    /// Where the pins are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Cached> {
        self.cached.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-reads the file if it moved since it was read.
    fn refresh(&self, cached: &mut Cached) -> Result<(), String> {
        let now = modified(&self.path);
        if now.is_some() && now == cached.modified {
            return Ok(());
        }
        if now.is_none() {
            return Ok(());
        }
        cached.file = read_file(&self.path, &self.server)?;
        cached.modified = now;
        Ok(())
    }

    /// The pins as they are now (for `tools diff` and the API).
    pub fn snapshot(&self) -> Result<PinFile, String> {
        let mut cached = self.lock();
        self.refresh(&mut cached)?;
        Ok(cached.file.clone())
    }

    /// Whether the server's first listing is still to be pinned.
    pub fn unpinned(&self) -> bool {
        let mut cached = self.lock();
        if let Err(e) = self.refresh(&mut cached) {
            tracing::warn!(server = %self.server, "{e}");
        }
        cached.file.pinned_at.is_none()
    }

    /// Where `tool` stands: [`ToolPin::Changed`] when its last listed
    /// definition is not the approved one.
    pub fn state(&self, tool: &str) -> ToolPin {
        let mut cached = self.lock();
        if !cached.file.changed.contains_key(tool) {
            return ToolPin::Pinned;
        }
        // Approved elsewhere since? Only this path pays for a stat.
        if let Err(e) = self.refresh(&mut cached) {
            tracing::warn!(server = %self.server, "{e}");
        }
        if cached.file.changed.contains_key(tool) {
            ToolPin::Changed
        } else {
            ToolPin::Pinned
        }
    }

    /// Takes in one `tools/list` page. `first_listing`: the page belongs
    /// to the server's first listing, whose tools are pinned as they are.
    /// Otherwise a definition that differs from its pin, or a tool with no
    /// pin, is a change; it is reported once per new digest.
    pub fn observe(&self, tools: &[Value], first_listing: bool) -> Observed {
        let listed: Vec<(String, String, &Value)> = tools
            .iter()
            .filter_map(|t| {
                let name = t.get("name")?.as_str()?;
                Some((name.to_owned(), digest(t), t))
            })
            .collect();
        let mut cached = self.lock();
        if let Err(e) = self.refresh(&mut cached) {
            tracing::warn!(server = %self.server, "{e}");
        }
        // Most lists teach nothing: decide that without touching the file.
        if !first_listing && !teaches(&cached.file, &listed) {
            return Observed::default();
        }
        let result = self.update(&mut cached, |file| apply(file, &listed, first_listing));
        match result {
            Ok(observed) => observed,
            Err(e) => {
                tracing::error!(server = %self.server, "tool pins not saved: {e}");
                // Still report what was seen: the record must say it.
                apply(&mut cached.file, &listed, first_listing)
            }
        }
    }

    /// Approves the definition of `tool` listed last (it must have the
    /// digest `expected`, when given: what the operator looked at).
    pub fn approve(
        &self,
        tool: &str,
        expected: Option<&str>,
        by: &str,
    ) -> Result<Approved, String> {
        let mut cached = self.lock();
        self.update(&mut cached, |file| {
            let Some(seen) = file.changed.get(tool) else {
                return Err(match file.pinned.get(tool) {
                    Some(pin) => format!(
                        "tool {tool:?} of server {:?} has no change to approve: it is pinned to {}",
                        file.server, pin.digest
                    ),
                    None => format!(
                        "server {:?} has no tool {tool:?} (see `intentproof tools diff {}`)",
                        file.server, file.server
                    ),
                });
            };
            if let Some(expected) = expected
                && expected != seen.digest
            {
                return Err(format!(
                    "tool {tool:?} changed again: its definition is now {}, not {expected}; look at `intentproof tools diff {} {tool}` again",
                    seen.digest, file.server
                ));
            }
            let mut pin = file.changed.remove(tool).ok_or("vanished")?;
            pin.at = now();
            pin.approved_by = Some(by.to_owned());
            let approved = Approved {
                name: tool.to_owned(),
                old_digest: file.pinned.get(tool).map(|p| p.digest.clone()),
                new_digest: pin.digest.clone(),
            };
            file.pinned.insert(tool.to_owned(), pin);
            Ok(approved)
        })?
    }

    /// Runs `change` on the file as it is on disk, under the file lock,
    /// and writes the result when it changed anything.
    fn update<R>(
        &self,
        cached: &mut Cached,
        change: impl FnOnce(&mut PinFile) -> R,
    ) -> Result<R, String> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        intentproof_core::private_file::create_private_dir(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let lock_path = self.path.with_extension("json.lock");
        let lock = open_lock(&lock_path)?;
        lock.lock()
            .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
        // What another process wrote before we took the lock counts.
        cached.modified = None;
        if modified(&self.path).is_some() {
            cached.file = read_file(&self.path, &self.server)?;
        }
        let before = cached.file.clone();
        let result = change(&mut cached.file);
        // A refused approval, or what another process already wrote,
        // changes nothing: the file stays as it is.
        if cached.file != before || !self.path.exists() {
            let written = serde_json::to_vec_pretty(&cached.file)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    intentproof_core::private_file::replace_private_file(&self.path, &bytes)
                        .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
                });
            if let Err(e) = written {
                // Not saved: the cache stays what the file says, so the
                // caller can still report what it saw.
                cached.file = before;
                return Err(e);
            }
        }
        cached.modified = modified(&self.path);
        drop(lock);
        Ok(result)
    }
}

fn open_lock(path: &Path) -> Result<File, String> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

fn read_file(path: &Path, server: &str) -> Result<PinFile, String> {
    use std::io::Read;
    let file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_FILE_BYTES} bytes: not a pins file",
            path.display()
        ));
    }
    let mut file: PinFile = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{} is not a pins file ({e}); move it away to pin the server anew",
            path.display()
        )
    })?;
    if file.server.is_empty() {
        file.server = server.to_owned();
    }
    Ok(file)
}

/// Whether a page differs from what `file` knows.
fn teaches(file: &PinFile, listed: &[(String, String, &Value)]) -> bool {
    listed.iter().any(|(name, digest, _)| {
        let pinned = file.pinned.get(name).map(|p| &p.digest);
        let seen = file.changed.get(name).map(|p| &p.digest);
        match pinned {
            Some(pinned) if pinned == digest => seen.is_some(),
            _ => seen != Some(digest),
        }
    })
}

fn apply(file: &mut PinFile, listed: &[(String, String, &Value)], first: bool) -> Observed {
    let mut observed = Observed::default();
    let at = now();
    if first && file.pinned_at.is_none() {
        file.pinned_at = Some(at.clone());
    }
    for (name, digest, tool) in listed {
        let pin = |digest: &String| Pin {
            digest: digest.clone(),
            definition: definition(tool),
            at: at.clone(),
            approved_by: None,
        };
        match file.pinned.get(name) {
            Some(pinned) if &pinned.digest == digest => {
                // Listed as pinned again: a change seen before is over.
                file.changed.remove(name);
            }
            Some(pinned) => {
                if file.changed.get(name).map(|p| &p.digest) != Some(digest) {
                    observed.changed.push(Change {
                        name: name.clone(),
                        old_digest: Some(pinned.digest.clone()),
                        new_digest: digest.clone(),
                        fields: changed_fields(&pinned.definition, tool),
                    });
                    file.changed.insert(name.clone(), pin(digest));
                }
            }
            None if first => {
                if file.pinned.len() < MAX_TOOLS {
                    file.pinned.insert(name.clone(), pin(digest));
                    observed.pinned.push((name.clone(), digest.clone()));
                }
            }
            None => {
                if file.changed.get(name).map(|p| &p.digest) != Some(digest)
                    && file.changed.len() < MAX_TOOLS
                {
                    observed.changed.push(Change {
                        name: name.clone(),
                        old_digest: None,
                        new_digest: digest.clone(),
                        fields: changed_fields(&Value::Null, tool),
                    });
                    file.changed.insert(name.clone(), pin(digest));
                }
            }
        }
    }
    observed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str, description: &str) -> Value {
        json!({"name": name, "description": description, "inputSchema": {"type": "object"}})
    }

    #[test]
    fn the_first_listing_pins_and_later_ones_report_changes_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let pins = Pins::open(&dir.path().join("pins"), "pay").unwrap_or_else(|e| panic!("{e}"));
        assert!(pins.unpinned());
        let first = pins.observe(&[tool("a", "A"), tool("b", "B")], true);
        assert_eq!(
            first.pinned,
            vec![
                ("a".into(), digest(&tool("a", "A"))),
                ("b".into(), digest(&tool("b", "B")))
            ]
        );
        assert!(!pins.unpinned());
        // The same list again teaches nothing.
        assert_eq!(
            pins.observe(&[tool("a", "A"), tool("b", "B")], false),
            Observed::default()
        );
        // A changed description and a new tool.
        let seen = pins.observe(&[tool("a", "A!"), tool("c", "C")], false);
        assert_eq!(
            seen.changed,
            vec![
                Change {
                    name: "a".into(),
                    old_digest: Some(digest(&tool("a", "A"))),
                    new_digest: digest(&tool("a", "A!")),
                    fields: vec!["description"],
                },
                Change {
                    name: "c".into(),
                    old_digest: None,
                    new_digest: digest(&tool("c", "C")),
                    fields: vec!["name", "description", "inputSchema"],
                },
            ]
        );
        assert_eq!(pins.state("a"), ToolPin::Changed);
        assert_eq!(pins.state("b"), ToolPin::Pinned);
        // Reported once.
        assert!(pins.observe(&[tool("a", "A!")], false).changed.is_empty());
        // Another process (a second Pins on the file) sees it and approves.
        let other = Pins::open(&dir.path().join("pins"), "pay").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(other.state("a"), ToolPin::Changed);
        let wrong = other.approve("a", Some("sha256:00"), "ops");
        assert!(wrong.is_err_and(|e| e.contains("changed again")));
        let approved = other
            .approve("a", Some(&digest(&tool("a", "A!"))), "ops")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(approved.old_digest, Some(digest(&tool("a", "A"))));
        // The first sees the approval at its next call of the tool.
        assert_eq!(pins.state("a"), ToolPin::Pinned);
        assert_eq!(pins.state("c"), ToolPin::Changed);
        let file = pins.snapshot().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.pinned["a"].approved_by.as_deref(), Some("ops"));
        let written = modified(pins.path());
        assert!(
            other
                .approve("b", None, "ops")
                .is_err_and(|e| e.contains("no change to approve"))
        );
        assert_eq!(
            modified(pins.path()),
            written,
            "a refused approval writes nothing"
        );
    }

    #[test]
    fn the_file_is_private_and_a_bad_one_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let pins_dir = dir.path().join("pins");
        let pins = Pins::open(&pins_dir, "pay").unwrap_or_else(|e| panic!("{e}"));
        pins.observe(&[tool("a", "A")], true);
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0)
        };
        assert_eq!(mode(&pins_dir), 0o700);
        assert_eq!(mode(pins.path()), 0o600);
        std::fs::write(pins.path(), "{").unwrap_or_else(|e| panic!("{e}"));
        let e = Pins::open(&pins_dir, "pay").err().unwrap_or_default();
        assert!(e.contains("is not a pins file"), "{e}");
        assert!(Pins::open(&pins_dir, "../x").is_err());
    }

    #[test]
    fn a_reverted_definition_ends_the_change() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let pins = Pins::open(dir.path(), "pay").unwrap_or_else(|e| panic!("{e}"));
        pins.observe(&[tool("a", "A")], true);
        assert_eq!(pins.observe(&[tool("a", "B")], false).changed.len(), 1);
        pins.observe(&[tool("a", "A")], false);
        assert_eq!(pins.state("a"), ToolPin::Pinned);
        // An empty first listing still pins: a tool that comes later is new.
        let empty = Pins::open(dir.path(), "empty").unwrap_or_else(|e| panic!("{e}"));
        empty.observe(&[], true);
        assert!(!empty.unpinned());
        assert_eq!(empty.observe(&[tool("x", "X")], false).changed.len(), 1);
    }
}
