//! Repo rules as tests, in the manner of rust-analyzer's `tidy`: what
//! `ARCHITECTURE.md` says about the crates (their layering, what `core` may
//! pull in, their docs, module cycles, the TUI's read-only access) checked
//! against the workspace as it is. A failure names the rule and the place
//! that breaks it; the fix is in the code, or (for a deliberate change of
//! the architecture) in this file and `ARCHITECTURE.md` together.
//!
//! Each rule's test also runs the rule on a broken input, so a rule that
//! can no longer fail is caught too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The layer of each workspace crate: a crate's normal and build
/// dependencies inside the workspace must be in lower layers. Dev
/// dependencies (tests) are free.
const LAYERS: &[(&str, u8)] = &[
    ("intentproof-core", 0),
    ("intentproof-journal", 0),
    ("intentproof-policy", 1),
    ("intentproof", 2),
    ("intentproof-store", 2),
    ("intentproof-bundle", 2),
    ("intentproof-upstream", 2),
    ("intentproof-mcp", 3),
    ("intentproof-api", 3),
    // Replication into PostgreSQL and the fleet checks (store + core only).
    ("intentproof-fleet", 3),
    ("intentproof-findings", 4),
    // rmcp agents and servers recording in-process (library and MCP recorder).
    ("intentproof-rmcp", 4),
    ("intentproof-http-proxy", 5),
    ("intentproof-gateway", 6),
    ("intentproof-tui", 6),
    ("intentproof-cli", 7),
    // Test peers: nothing shipped depends on them.
    ("intentproof-mcp-peers", 8),
];

/// What `intentproof-core` must not pull in, directly or through another
/// crate: it is the record, and stays pure.
const NOT_IN_CORE: &[&str] = &["tokio", "axum", "hyper", "sled", "rmcp", "reqwest"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `cargo metadata` of the workspace's own packages.
fn metadata() -> Value {
    cargo_metadata(&["--no-deps"])
}

/// `cargo metadata` with the resolved dependency graph (offline and locked:
/// the test binary was built, so every dependency is at hand, and the
/// lock file is never rewritten).
fn resolved_metadata() -> Value {
    cargo_metadata(&["--locked", "--offline"])
}

fn cargo_metadata(args: &[&str]) -> Value {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["metadata", "--format-version", "1"])
        .args(args)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// A workspace crate: its name, the root file of its library (else its
/// binary), and its normal and build dependencies by name.
struct Crate {
    name: String,
    root: PathBuf,
    deps: BTreeSet<String>,
}

fn workspace_crates(meta: &Value) -> Vec<Crate> {
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut crates = Vec::new();
    for package in meta["packages"].as_array().unwrap() {
        if !members.contains(package["id"].as_str().unwrap_or("")) {
            continue;
        }
        let targets = package["targets"].as_array().unwrap();
        let kind = |t: &&Value, k: &str| t["kind"].as_array().unwrap().iter().any(|x| x == k);
        let root = targets
            .iter()
            .find(|t| kind(t, "lib"))
            .or_else(|| targets.iter().find(|t| kind(t, "bin")))
            .and_then(|t| t["src_path"].as_str())
            .map(PathBuf::from)
            .unwrap();
        let deps = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null() || d["kind"] == "build")
            .filter_map(|d| d["name"].as_str().map(str::to_owned))
            .collect();
        crates.push(Crate {
            name: package["name"].as_str().unwrap().to_owned(),
            root,
            deps,
        });
    }
    crates.sort_by(|a, b| a.name.cmp(&b.name));
    crates
}

// ---- dependency direction ---------------------------------------------------------

/// Every way the workspace's crates break [`LAYERS`].
fn layering_breaks(crates: &[(String, BTreeSet<String>)], layers: &[(&str, u8)]) -> Vec<String> {
    let layer: BTreeMap<&str, u8> = layers.iter().copied().collect();
    let mut breaks = Vec::new();
    for (name, deps) in crates {
        let Some(&own) = layer.get(name.as_str()) else {
            breaks.push(format!(
                "{name} has no layer: add it to LAYERS in tests/tidy.rs and to ARCHITECTURE.md"
            ));
            continue;
        };
        for dep in deps {
            if let Some(&theirs) = layer.get(dep.as_str())
                && theirs >= own
            {
                breaks.push(format!(
                    "{name} (layer {own}) depends on {dep} (layer {theirs}): dependencies point to lower layers only"
                ));
            }
        }
    }
    breaks
}

#[test]
fn crates_depend_on_lower_layers_only() {
    let crates: Vec<_> = workspace_crates(&metadata())
        .into_iter()
        .map(|c| (c.name, c.deps))
        .collect();
    assert_eq!(layering_breaks(&crates, LAYERS), Vec::<String>::new());
    // The rule bites: core depending on the store is refused.
    let mut broken = crates.clone();
    for (name, deps) in &mut broken {
        if name == "intentproof-core" {
            deps.insert("intentproof-store".into());
        }
    }
    assert_eq!(
        layering_breaks(&broken, LAYERS),
        vec![
            "intentproof-core (layer 0) depends on intentproof-store (layer 2): dependencies point to lower layers only"
        ]
    );
}

// ---- core stays pure ----------------------------------------------------------------

/// The crates `package` pulls in through normal and build dependencies.
fn reachable(meta: &Value, package: &str) -> BTreeSet<String> {
    let nodes = meta["resolve"]["nodes"].as_array().unwrap();
    let name_of = |id: &str| -> String {
        meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .and_then(|p| p["name"].as_str())
            .unwrap_or(id)
            .to_owned()
    };
    let start = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["name"] == package
                && meta["workspace_members"]
                    .as_array()
                    .unwrap()
                    .contains(&p["id"])
        })
        .and_then(|p| p["id"].as_str())
        .unwrap()
        .to_owned();
    let mut seen = BTreeSet::new();
    let mut pending = vec![start];
    while let Some(id) = pending.pop() {
        let Some(node) = nodes.iter().find(|n| n["id"] == id.as_str()) else {
            continue;
        };
        for dep in node["deps"].as_array().unwrap() {
            let runtime = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null() || k["kind"] == "build");
            let dep_id = dep["pkg"].as_str().unwrap().to_owned();
            if runtime && seen.insert(dep_id.clone()) {
                pending.push(dep_id);
            }
        }
    }
    seen.iter().map(|id| name_of(id)).collect()
}

fn impurities(pulled_in: &BTreeSet<String>) -> Vec<&'static str> {
    NOT_IN_CORE
        .iter()
        .copied()
        .filter(|c| pulled_in.contains(*c))
        .collect()
}

#[test]
fn core_pulls_in_no_runtime_network_or_storage() {
    let meta = resolved_metadata();
    let pulled_in = reachable(&meta, "intentproof-core");
    assert_eq!(
        impurities(&pulled_in),
        Vec::<&str>::new(),
        "intentproof-core pulls these in"
    );
    // The rule bites: the gateway's closure has them.
    assert!(impurities(&reachable(&meta, "intentproof-gateway")).contains(&"tokio"));
}

/// What a reader of the store (the TUI) must not link: a server.
const NOT_IN_READERS: &[&str] = &["axum"];

#[test]
fn the_tui_links_no_server() {
    let meta = resolved_metadata();
    let pulled_in = reachable(&meta, "intentproof-tui");
    let servers: Vec<&str> = NOT_IN_READERS
        .iter()
        .copied()
        .filter(|c| pulled_in.contains(*c))
        .collect();
    assert_eq!(
        servers,
        Vec::<&str>::new(),
        "intentproof-tui pulls these in: it reads through intentproof-api, not the daemon"
    );
    // The rule bites: the daemon links one.
    assert!(reachable(&meta, "intentproof-gateway").contains("axum"));
}

// ---- crate docs ---------------------------------------------------------------------

/// The crate doc (leading `//!` lines) of a root file, if it says what the
/// crate does and what it does not do.
fn doc_problem(name: &str, source: &str) -> Option<String> {
    let doc: Vec<&str> = source
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .collect();
    if doc.is_empty() {
        return Some(format!(
            "{name}: no crate docs (`//!` at the top of its root file)"
        ));
    }
    let says_not = doc.iter().any(|l| {
        let l = l.replace("**", "");
        l.contains("What it does not do")
    });
    (!says_not).then(|| format!("{name}: its crate docs lack a \"What it does not do\" paragraph"))
}

#[test]
fn every_crate_says_what_it_does_and_does_not_do() {
    let problems: Vec<String> = workspace_crates(&metadata())
        .iter()
        .filter_map(|c| doc_problem(&c.name, &std::fs::read_to_string(&c.root).unwrap()))
        .collect();
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(
        doc_problem("x", "//! Does things.\n\nfn main() {}\n").as_deref(),
        Some("x: its crate docs lack a \"What it does not do\" paragraph")
    );
    assert_eq!(
        doc_problem("x", "fn main() {}\n").as_deref(),
        Some("x: no crate docs (`//!` at the top of its root file)")
    );
}

// ---- module cycles -------------------------------------------------------------------

/// The code of a file without its tests (everything from the first
/// `#[cfg(test)]` on).
fn non_test(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

/// `text` without its comment lines: a doc link to a module (`[x]
/// (crate::m::x)`) points a reader there, it is not a dependency.
fn code_only(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level modules named after `prefix` in `text` (`crate::x`, the
/// names in `crate::{x, y::z}`).
fn names_after(text: &str, prefix: &str, out: &mut BTreeSet<String>) {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in text.match_indices(prefix) {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &text[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(group.split(',').map(ident).filter(|n| !n.is_empty()));
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
}

/// The graph of a crate's top-level modules: module -> the modules its
/// non-test code names (`crate::m`, or `super::m` from a top-level file).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![src.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.parent() == Some(src) && path.file_name().is_some_and(|n| n == "bin") {
                    continue;
                }
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel: Vec<String> = path
                .strip_prefix(src)
                .unwrap()
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            let top = rel[0].trim_end_matches(".rs").to_owned();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let text = code_only(non_test(&text));
            let text = text.as_str();
            let mut named = BTreeSet::new();
            names_after(text, "crate::", &mut named);
            let top_level_file = rel.len() == 1 || (rel.len() == 2 && rel[1] == "mod.rs");
            if top_level_file {
                names_after(text, "super::", &mut named);
            } else if rel.len() == 2 {
                names_after(text, "super::super::", &mut named);
            }
            named.remove(&top);
            graph.entry(top).or_default().extend(named);
        }
    }
    graph
}

/// The cycles of a module graph: its strongly connected components of more
/// than one module, each sorted.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<Vec<String>> {
    let reaches = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut pending = vec![from.to_owned()];
        while let Some(m) = pending.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if graph.contains_key(next) && seen.insert(next.clone()) {
                    pending.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reaches(m))).collect();
    let mut out = BTreeSet::new();
    for (m, from_m) in &reach {
        let component: Vec<String> = from_m
            .iter()
            .filter(|other| reach[other].contains(m.as_str()))
            .cloned()
            .collect();
        if component.len() > 1 {
            out.insert(component);
        }
    }
    out
}

#[test]
fn no_module_cycles() {
    let mut found = BTreeSet::new();
    for krate in workspace_crates(&metadata()) {
        let src = krate.root.parent().unwrap();
        for cycle in cycles(&module_graph(src)) {
            found.insert((krate.name.clone(), cycle));
        }
    }
    assert!(
        found.is_empty(),
        "module cycles (crate, modules that reach each other): {found:?}; break each: move what both sides need into a module of its own, or pass it in"
    );
    // The rule bites: two modules naming each other are a cycle.
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        (
            "b".to_owned(),
            BTreeSet::from(["a".to_owned(), "c".to_owned()]),
        ),
        ("c".to_owned(), BTreeSet::new()),
    ]);
    assert_eq!(
        cycles(&graph),
        BTreeSet::from([vec!["a".to_owned(), "b".to_owned()]])
    );
    let mut named = BTreeSet::new();
    names_after(
        "use crate::{store::X, codec};\nlet x = crate::journal::read();\nmy_crate::no;",
        "crate::",
        &mut named,
    );
    assert_eq!(
        named,
        BTreeSet::from(["codec".to_owned(), "journal".to_owned(), "store".to_owned()])
    );
    // A doc link is not a dependency.
    assert_eq!(
        code_only("/// See [`crate::v1`].\nuse crate::canon;\n    // crate::x\n"),
        "use crate::canon;"
    );
}

// ---- the TUI reads the store read-only ---------------------------------------------------

/// Places in `source`'s non-test code that open a store to write.
fn writable_opens(source: &str) -> usize {
    non_test(source).matches("Store::open(").count()
}

#[test]
fn the_tui_opens_the_store_read_only() {
    let src = workspace_root().join("tui/src");
    let mut opens = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if writable_opens(&text) > 0 {
            opens.push(path.display().to_string());
        }
    }
    assert_eq!(
        opens,
        Vec::<String>::new(),
        "the TUI must read through Store::open_read_only"
    );
    assert_eq!(writable_opens("let s = Store::open(dir, o, &k)?;"), 1);
    assert_eq!(
        writable_opens("let s = Store::open_read_only(dir, o, &k)?;\n#[cfg(test)]\nStore::open("),
        0
    );
}
