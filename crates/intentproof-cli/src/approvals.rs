//! `intentproof approvals`: calls held for a person (guard mode's
//! `require_approval`). Lists them, approves or denies one, through the
//! daemon (which records nothing itself: the gateway holding the call
//! records the request and the decision in the call's chain).

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use intentproof_api::wire;

use crate::daemon::{Client, ClientArgs};

/// `intentproof approvals` flags.
#[derive(Args)]
pub struct ApprovalsArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: Option<ApprovalsCommand>,
}

#[derive(Subcommand)]
enum ApprovalsCommand {
    /// Let a held call through.
    Approve {
        #[command(flatten)]
        client: ClientArgs,
        /// The approval's id (`intentproof approvals` lists them).
        id: String,
        /// Why (recorded with the decision).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Refuse a held call; the agent gets the reason.
    Deny {
        #[command(flatten)]
        client: ClientArgs,
        /// The approval's id.
        id: String,
        /// Why (required: the agent and the record are told).
        #[arg(long, required = true)]
        reason: String,
    },
}

pub fn run(args: ApprovalsArgs) -> Result<()> {
    match args.command {
        None => list(&args.client),
        Some(ApprovalsCommand::Approve { client, id, reason }) => {
            decide(&client, &id, "approve", reason)
        }
        Some(ApprovalsCommand::Deny { client, id, reason }) => {
            decide(&client, &id, "deny", Some(reason))
        }
    }
}

fn list(args: &ClientArgs) -> Result<()> {
    let client = Client::new(args)?;
    let page: wire::ApprovalsPage = client.get(&["v1", "approvals"], &[])?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    if page.approvals.is_empty() {
        println!("no approvals");
        return Ok(());
    }
    for row in &page.approvals {
        print!("{}", describe(row));
    }
    Ok(())
}

/// One approval as the CLI prints it.
pub fn describe(row: &wire::ApprovalRow) -> String {
    let r = &row.request;
    let mut out = format!("{} {} {}\n", r.id, row.state.to_uppercase(), r.action);
    out.push_str(&format!("  intent     {}\n", r.intent));
    if let Some(step) = r.plan_step {
        out.push_str(&format!(
            "  plan       {} step {}\n",
            r.plan_id.as_deref().unwrap_or("?"),
            step + 1
        ));
    }
    out.push_str(&format!("  arguments  {}\n", r.arguments));
    out.push_str(&format!("  rule       {}\n", r.rule));
    out.push_str(&format!(
        "  agent      {} (correlation {})\n",
        r.agent, r.correlation_id
    ));
    out.push_str(&format!(
        "  requested  {} (expires {})\n",
        r.requested_at, r.expires_at
    ));
    if let Some(at) = &row.decided_at {
        let by = row.decided_by.as_deref().unwrap_or("nobody");
        let why = row
            .reason
            .as_deref()
            .map_or_else(String::new, |w| format!(": {w}"));
        out.push_str(&format!("  decided    {at} by {by}{why}\n"));
    }
    out
}

fn decide(args: &ClientArgs, id: &str, decision: &str, reason: Option<String>) -> Result<()> {
    let client = Client::new(args)?;
    let body = wire::ApprovalDecision {
        decision: decision.to_owned(),
        reason,
    };
    let row: wire::ApprovalRow = client
        .post(&["v1", "approvals", id], Some(&body))
        .with_context(|| format!("cannot {decision} {id}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&row)?);
    } else {
        print!("{}", describe(&row));
    }
    Ok(())
}
