//! `intentproof tools`: guard mode's tool pins. `diff` reads the pins
//! files in the data dir (no daemon needed); `approve` asks the daemon,
//! which updates the pins and records the approval as a signed event.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use intentproof_api::datadir::DataDir;
use intentproof_api::wire;
use intentproof_mcp::pins::{Pin, PinFile, Pins};
use intentproof_policy::guard::tools::changed_fields;
use serde_json::{Value, json};

use crate::daemon::{Client, ClientArgs, data_dir_or_default};

#[derive(Subcommand)]
pub enum ToolsCommand {
    /// Show how a server's tools differ from their pins: changed
    /// definitions and tools that appeared after pinning (from the data dir).
    Diff {
        /// The server (`[[mcp.servers]] name`, or `intentproof mcp --name`).
        server: String,
        /// Only this tool.
        tool: Option<String>,
        /// Data directory [default: $INTENTPROOF_DATA_DIR or ~/.intentproof]
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Accept a tool's changed (or new) definition: it becomes the pin, and
    /// a hidden or blocked tool is usable again. Recorded by the daemon.
    Approve {
        #[command(flatten)]
        client: ClientArgs,
        /// The MCP server.
        #[arg(value_name = "SERVER")]
        mcp_server: String,
        /// The tool.
        tool: String,
        /// Approve only if the definition is still this digest (as `tools
        /// diff` showed it).
        #[arg(long)]
        digest: Option<String>,
    },
}

pub fn run(command: ToolsCommand) -> Result<()> {
    match command {
        ToolsCommand::Diff {
            server,
            tool,
            data_dir,
            json,
        } => diff(&server, tool.as_deref(), data_dir, json),
        ToolsCommand::Approve {
            client,
            mcp_server,
            tool,
            digest,
        } => approve(&client, &mcp_server, &tool, digest),
    }
}

fn diff(server: &str, tool: Option<&str>, data_dir: Option<PathBuf>, as_json: bool) -> Result<()> {
    let dir = DataDir::new(data_dir_or_default(data_dir)?);
    let pins = Pins::open(&dir.pins_dir(), server).map_err(|e| anyhow!(e))?;
    if !pins.path().exists() {
        bail!(
            "server {server:?} has no pins in {}: pinning is on with `on_tool_change` (config) or `intentproof mcp --on-tool-change`, and starts at the server's first tools/list",
            dir.pins_dir().display()
        );
    }
    let file = pins.snapshot().map_err(|e| anyhow!(e))?;
    if let Some(tool) = tool
        && !file.pinned.contains_key(tool)
        && !file.changed.contains_key(tool)
    {
        bail!("server {server:?} has no tool {tool:?} in its pins");
    }
    let changes: Vec<(&String, Option<&Pin>, &Pin)> = file
        .changed
        .iter()
        .filter(|(name, _)| tool.is_none_or(|t| t == name.as_str()))
        .map(|(name, seen)| (name, file.pinned.get(name), seen))
        .collect();
    if as_json {
        let rows: Vec<Value> = changes
            .iter()
            .map(|(name, pinned, seen)| {
                json!({
                    "name": name,
                    "old_digest": pinned.map(|p| &p.digest),
                    "new_digest": seen.digest,
                    "fields": changed_fields(pinned.map_or(&Value::Null, |p| &p.definition), &seen.definition),
                    "old": pinned.map(|p| &p.definition),
                    "new": seen.definition,
                    "seen_at": seen.at,
                })
            })
            .collect();
        let body = json!({"server": server, "pinned": file.pinned.len(), "changed": rows});
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    print!("{}", render(&file, &changes, tool));
    Ok(())
}

/// The text `tools diff` prints.
fn render(file: &PinFile, changes: &[(&String, Option<&Pin>, &Pin)], tool: Option<&str>) -> String {
    let mut out = String::new();
    if changes.is_empty() {
        let what = tool.map_or_else(
            || format!("all {} pinned tools", file.pinned.len()),
            |t| format!("tool {t}"),
        );
        out.push_str(&format!(
            "server {}: no change ({what} as pinned)\n",
            file.server
        ));
        return out;
    }
    for (name, pinned, seen) in changes {
        let old = pinned.map_or(&Value::Null, |p| &p.definition);
        let fields = changed_fields(old, &seen.definition);
        match pinned {
            Some(pin) => {
                out.push_str(&format!("TOOL CHANGED {}.{name}\n", file.server));
                let by = pin
                    .approved_by
                    .as_deref()
                    .map_or_else(String::new, |b| format!(", approved by {b}"));
                out.push_str(&format!("  pinned  {} ({}{by})\n", pin.digest, pin.at));
            }
            None => {
                out.push_str(&format!(
                    "TOOL CHANGED {}.{name} (new: it appeared after pinning)\n",
                    file.server
                ));
            }
        }
        out.push_str(&format!(
            "  listed  {} (first seen {})\n",
            seen.digest, seen.at
        ));
        out.push_str(&format!("  fields  {}\n", fields.join(", ")));
        for field in fields {
            let text = |def: &Value| match def.get(field) {
                None => "(absent)".to_owned(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            out.push_str(&format!("  {field}:\n"));
            if pinned.is_some() {
                out.push_str(&format!("    - {}\n", text(old)));
            }
            out.push_str(&format!("    + {}\n", text(&seen.definition)));
        }
        out.push_str(&format!(
            "  approve: intentproof tools approve {} {name} --digest {}\n",
            file.server, seen.digest
        ));
    }
    out
}

fn approve(args: &ClientArgs, server: &str, tool: &str, digest: Option<String>) -> Result<()> {
    let client = Client::new(args)?;
    let body = json!({ "digest": digest });
    let approved: wire::ToolApproved = client
        .post(&["v1", "tools", server, tool, "approve"], Some(&body))
        .with_context(|| format!("cannot approve {server}.{tool}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&approved)?);
        return Ok(());
    }
    println!(
        "approved {}.{}: pinned to {} (was {}) by {}; event {}",
        approved.server,
        approved.tool,
        approved.new_digest,
        approved.old_digest.as_deref().unwrap_or("not pinned"),
        approved.approved_by,
        approved.event_id
    );
    Ok(())
}
