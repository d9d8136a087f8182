//! Starting and stopping the daemon.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::time::Duration;

use intentproof_store::{Store, StoreOptions};
use tokio::sync::{Notify, watch};

use crate::api;
use crate::config::Config;
use crate::ingest::{DaemonSealer, TrustedKeys};
use crate::metrics::Metrics;
use crate::state::{AppState, record_own_events};
use crate::writer::Writer;
use intentproof_api::datadir::DataDir;

/// Why the daemon could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory is unusable.
    #[error(transparent)]
    DataDir(#[from] intentproof_api::datadir::DataDirError),
    /// The store could not open.
    #[error("cannot open the store: {0}")]
    Store(#[from] intentproof_store::StoreError),
    /// The address could not be bound.
    #[error(
        "cannot listen on {addr}: {source}; is another daemon running? pick another address with --listen"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A configured verification policy is invalid (one problem a line,
    /// as `intentproof policy lint` prints them).
    #[error(transparent)]
    Policy(intentproof_policy::verification::InvalidPolicy),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// A running daemon (for tests and embedding): where it listens, and how to
/// stop it.
pub struct Daemon {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Daemon {
    /// Starts a daemon on `config.listen` and returns once it accepts
    /// connections.
    pub async fn start(config: Config) -> Result<Daemon, ServeError> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            serve_with(
                config,
                async {
                    let _ = stopped.await;
                },
                Some(ready_tx),
            )
            .await
        });
        match ready_rx.await {
            Ok(addr) => Ok(Daemon {
                addr,
                stop: Some(stop),
                task,
            }),
            Err(_) => match task.await {
                Ok(Err(e)) => Err(e),
                _ => Err(ServeError::Other(
                    "the daemon stopped while starting".into(),
                )),
            },
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop: drain, fsync, final checkpoint.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
            .await
            .map_err(|e| ServeError::Other(format!("daemon task failed: {e}")))?
    }
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    serve_with(config, shutdown_signal(), None).await
}

/// Loads the configured verification policies and runs on each the one
/// validation `intentproof policy lint` and `doctor` run
/// ([`check_policy`](intentproof_policy::verification::check_policy)): a
/// policy with any problem stops the daemon with lint's message, since a
/// rule that cannot be evaluated as written would silently never fire.
fn load_policies(
    paths: &[std::path::PathBuf],
) -> Result<Vec<intentproof_policy::verification::Policy>, ServeError> {
    use intentproof_policy::verification::{
        InvalidPolicy, MAX_POLICY_BYTES, PolicyFormat, check_policy,
    };
    use std::io::Read;
    let mut policies = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_POLICY_BYTES as u64 + 1).read_to_end(&mut bytes))
            .map_err(|e| ServeError::Policy(InvalidPolicy::unreadable(&name, &e)))?;
        policies.push(
            check_policy(&name, &bytes, PolicyFormat::for_path(path))
                .map_err(ServeError::Policy)?,
        );
    }
    Ok(policies)
}

/// Ingests spool files left by `intentproof mcp` processes that are gone.
async fn drain_orphan_spools(state: &Arc<AppState>) {
    let spool = state.data_dir.path().join("spool");
    let adopted = {
        let spool = spool.clone();
        tokio::task::spawn_blocking(move || {
            crate::shipper::adopt_orphans(&spool, std::path::Path::new(""))
        })
        .await
        .unwrap_or_default()
    };
    // The claimed files are deleted once each line is stored or set aside
    // (below); a crash before that leaves them to be adopted again.
    let (lines, claimed) = (adopted.lines, adopted.claimed);
    if lines.is_empty() {
        for path in &claimed {
            let _ = std::fs::remove_file(path);
        }
        return;
    }
    let (mut stored, mut refused) = (0usize, Vec::new());
    for line in lines {
        // Spool lines are what `intentproof mcp` sealed in this data dir.
        let prepared = crate::ingest::prepare(
            line.as_bytes(),
            &state.keys,
            &state.sealer,
            crate::ingest::Caller::Authenticated,
        );
        let outcome = match prepared {
            Ok(incoming) => match state.writer.submit(incoming) {
                Ok(answer) => matches!(answer.await, Ok(Ok(Ok(_)))),
                Err(_) => false,
            },
            Err(_) => false,
        };
        if outcome {
            stored += 1;
        } else {
            refused.push(line);
        }
    }
    if !refused.is_empty() {
        // Never drop them: set them aside for a person to look at.
        let kept = spool.join("rejected.jsonl");
        let text: String = refused.iter().map(|l| format!("{l}\n")).collect();
        let saved = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&kept)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
        if let Err(e) = saved {
            tracing::error!(error = %e, file = %kept.display(), "cannot set refused spooled events aside; their spool files stay");
            return;
        }
    }
    for path in &claimed {
        let _ = std::fs::remove_file(path);
    }
    let refused = refused.len();
    tracing::info!(stored, refused, spool = %spool.display(), "ingested events left in the spool by gateway processes that ended");
}

/// Resolves at SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown requested: draining");
}

async fn serve_with(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), ServeError> {
    // Policies first: an invalid one stops the daemon before it touches
    // the data dir.
    let policies = Arc::new(load_policies(&config.verification_policies)?);
    // Before anything starts: anyone who can reach a non-loopback address
    // could drive the MCP servers (run their tools) without a token.
    if let Some(problem) = config.mcp_token_problem() {
        return Err(ServeError::Other(problem));
    }
    let data_dir = DataDir::new(&config.data_dir);
    let daemon_key = data_dir.ensure()?;
    let ring = data_dir.key_ring()?;
    let keys = TrustedKeys::new(ring.entries());
    let transparency = Arc::new(
        crate::transparency::Transparency::new(&config.transparency, &daemon_key, data_dir.path())
            .map_err(ServeError::Other)?,
    );

    let store_dir = data_dir.path().to_owned();
    let store_options = StoreOptions {
        index_cache_bytes: config.index_cache_mb.saturating_mul(1024 * 1024),
        ..StoreOptions::default()
    };
    let store = tokio::task::spawn_blocking(move || {
        Store::open(&store_dir, store_options, &|instance| ring.get(instance))
    })
    .await
    .map_err(|e| ServeError::Other(e.to_string()))??;
    let recovery = store.recovery().clone();
    if recovery.truncated_bytes > 0 {
        tracing::warn!(
            dropped_bytes = recovery.truncated_bytes,
            "journal torn tail recovered at start: dropped {} bytes (unacknowledged); kept in {}",
            recovery.truncated_bytes,
            recovery
                .quarantined_to
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    let store = Arc::new(store);
    let plan_idle_timeout = Duration::from_secs(config.plan_idle_timeout_secs);
    // Findings are derived state: rebuilt from the journal at every start
    // (one read of every event), then kept up to date by the writer.
    let findings = {
        let (replayed, policies) = (Arc::clone(&store), Arc::clone(&policies));
        let started = std::time::Instant::now();
        let findings = tokio::task::spawn_blocking(move || {
            intentproof_findings::live::LiveFindings::replay(replayed, plan_idle_timeout, policies)
        })
        .await
        .map_err(|e| ServeError::Other(e.to_string()))??;
        tracing::info!(
            records = store.tree_size(),
            millis = started.elapsed().as_millis() as u64,
            "findings rebuilt from the journal"
        );
        Arc::new(findings)
    };
    let metrics = Arc::new(Metrics::default());
    let appended = Arc::new(Notify::new());
    let follower = Arc::clone(&findings);
    let (writer, writer_thread) = Writer::start(
        Arc::clone(&store),
        config.queue_capacity,
        Arc::clone(&metrics),
        Arc::clone(&appended),
        Some(Arc::new(move |batch, outcomes| {
            follower.committed(batch, outcomes)
        })),
    )
    .map_err(|e| ServeError::Other(format!("cannot start the writer thread: {e}")))?;

    let redactor = Arc::new(data_dir.redactor(config.redaction_policy.as_deref())?);
    let approvals = crate::approvals::Approvals::new(Arc::clone(&redactor));
    let approval_rules: Arc<[intentproof_policy::guard::ApprovalRule]> =
        Arc::from(config.approvals.parsed_rules().map_err(ServeError::Other)?);
    let state = Arc::new(AppState {
        sealer: DaemonSealer::new(
            daemon_key.clone(),
            &config.tenant_id,
            Arc::clone(&store),
            redactor,
        ),
        store: Arc::clone(&store),
        writer,
        keys,
        token: data_dir.token()?,
        ingest_token: config.ingest_token.clone(),
        approvers: config.approvals.approvers.clone(),
        approvals: Arc::clone(&approvals),
        metrics: Arc::clone(&metrics),
        data_dir: data_dir.clone(),
        max_body_bytes: config.max_body_bytes,
        transparency: Arc::clone(&transparency),
        latest_checkpoint: std::sync::Mutex::new(
            intentproof_store::checkpoint::latest(data_dir.path())
                .map_err(|e| ServeError::Other(e.to_string()))?,
        ),
        daemon_key,
        mcp: std::sync::OnceLock::new(),
        http: std::sync::OnceLock::new(),
        plan_idle_timeout,
        policies,
        findings,
        bulk: crate::bulk::BulkPool::start(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        )
        .map_err(|e| ServeError::Other(format!("cannot start the bulk threads: {e}")))?,
    });
    // One recording thread for the events the daemon makes itself.
    let recording = if config.mcp.servers.is_empty() && config.http.routes.is_empty() {
        None
    } else {
        let weak = Arc::downgrade(&state);
        let sink: crate::recording::EventSink =
            Arc::new(move |events: Vec<_>| match weak.upgrade() {
                Some(state) => record_own_events(&state, events),
                None => tracing::error!(
                    count = events.len(),
                    "gateway events recorded after the daemon stopped writing were not stored"
                ),
            });
        Some(Arc::new(
            crate::recording::Recording::start(sink).map_err(ServeError::Other)?,
        ))
    };
    if let (false, Some(recording)) = (config.mcp.servers.is_empty(), &recording) {
        let gateway = Arc::new(
            intentproof_mcp::http::McpHttp::new(
                &config.mcp,
                Arc::clone(recording) as Arc<dyn intentproof_mcp::sink::RecordSink>,
                intentproof_mcp::http::GuardDeps {
                    pins_dir: data_dir.pins_dir(),
                    approvals: Arc::clone(&approval_rules),
                    approval_timeout: std::time::Duration::from_secs(config.approvals.timeout_secs),
                    approver: Arc::new(crate::approvals::DaemonApprover(Arc::clone(&approvals))),
                },
            )
            .map_err(ServeError::Other)?,
        );
        // Ends idle sessions and their upstreams; stops with the gateway.
        drop(gateway.start_reaper());
        let _ = state.mcp.set(gateway);
        tracing::info!(
            servers = config.mcp.servers.len(),
            "MCP gateway: /mcp/<name>"
        );
    }

    if let (false, Some(recording)) = (config.http.routes.is_empty(), &recording) {
        let proxy = intentproof_http_proxy::HttpProxy::new(
            &config.http,
            intentproof_http_proxy::ProxyDeps {
                recording: Arc::clone(recording) as Arc<dyn intentproof_mcp::sink::RecordSink>,
                store: Arc::clone(&store),
                plan_idle_timeout: state.plan_idle_timeout,
                token: state.token.clone(),
                token_path: data_dir.token_path(),
                listen: config.listen,
                approvals: intentproof_http_proxy::Approvals {
                    rules: Arc::clone(&approval_rules),
                    timeout: std::time::Duration::from_secs(config.approvals.timeout_secs),
                    approver: Arc::new(crate::approvals::DaemonApprover(Arc::clone(&approvals))),
                },
            },
        )
        .map_err(ServeError::Other)?;
        let _ = state.http.set(Arc::new(proxy));
        tracing::info!(
            routes = config.http.routes.len(),
            "HTTP API proxy: /proxy/<name>/..."
        );
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Other(e.to_string()))?;
    data_dir.write_daemon_info(&addr.to_string())?;
    tracing::info!(%addr, data_dir = %data_dir.path().display(), records = store.tree_size(), "intentproof daemon listening");

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut background = Vec::new();
    for exporter in config.exporters.clone() {
        background.push(tokio::spawn(crate::pump::run(
            exporter,
            Arc::clone(&store),
            Arc::clone(&appended),
            Arc::clone(&metrics),
            stop_rx.clone(),
        )));
    }
    if let Some(fleet) = config.fleet.clone() {
        let key = &state.daemon_key;
        let (log_signer, _) = crate::transparency::signers(&config.transparency, key);
        let identity = intentproof_fleet::replicate::DaemonIdentity {
            name: key.instance_id().to_owned(),
            public_key: key.public_key_base64(),
            key_id: key.key_id(),
            origin: log_signer.name().to_owned(),
        };
        let replicator = intentproof_fleet::Replicator::new(
            fleet,
            identity,
            Arc::clone(&store),
            data_dir.path().to_owned(),
        )
        .map_err(|e| ServeError::Other(e.to_string()))?;
        let _ = metrics.fleet.set(replicator.status());
        background.push(tokio::spawn(
            replicator.run(Arc::clone(&appended), stop_rx.clone()),
        ));
    }
    for collector in config.otlp.iter().filter(|c| c.findings).cloned() {
        background.push(tokio::spawn(crate::otlp::run_findings(
            collector,
            Arc::clone(&state),
            Arc::clone(&appended),
            Arc::clone(&metrics),
            stop_rx.clone(),
        )));
    }
    for collector in config.otlp.clone() {
        background.push(tokio::spawn(crate::otlp::run(
            collector,
            Arc::clone(&store),
            state.daemon_key.instance_id().to_owned(),
            Arc::clone(&appended),
            Arc::clone(&metrics),
            stop_rx.clone(),
        )));
    }
    for receiver in config.webhooks.clone() {
        background.push(tokio::spawn(crate::webhook::run(
            receiver,
            Arc::clone(&state),
            addr,
            Arc::clone(&appended),
            Arc::clone(&metrics),
            stop_rx.clone(),
        )));
    }
    for witness in config.transparency.witnesses.clone() {
        background.push(tokio::spawn(crate::transparency::push_to_witness(
            witness,
            Arc::clone(&store),
            Arc::clone(&transparency),
            Arc::clone(&metrics),
            stop_rx.clone(),
        )));
    }
    if config.checkpoint_interval_secs > 0 {
        let every = Duration::from_secs(config.checkpoint_interval_secs);
        let checkpoint_state = Arc::clone(&state);
        let mut stop = stop_rx.clone();
        background.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.changed() => return,
                }
                let worker = Arc::clone(&checkpoint_state);
                if let Ok(Err(e)) =
                    tokio::task::spawn_blocking(move || worker.checkpoint_now()).await
                {
                    tracing::error!(error = %e, "cannot write a checkpoint");
                }
            }
        }));
    }
    // Events an `intentproof mcp` process spooled and could not deliver
    // before it ended are ingested now.
    {
        let spool_state = Arc::clone(&state);
        background.push(tokio::spawn(async move {
            drain_orphan_spools(&spool_state).await
        }));
    }
    if let Some(ready) = ready {
        let _ = ready.send(addr);
    }

    // Without TCP_NODELAY a streamed response (the MCP gateway's event
    // streams: headers, then a small body chunk) waits for the client's
    // delayed ACK: ~40 ms per call.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let guard = Arc::new(crate::browser_guard::BrowserGuard::new(
        crate::browser_guard::GuardSettings {
            listen: addr,
            allowed_origins: &config.allowed_origins,
            allowed_hosts: &config.allowed_hosts,
            ingest_token: config.ingest_token.clone(),
            daemon_token: state.token.clone(),
            mcp_token: config.mcp_token.clone(),
            metrics: Arc::clone(&metrics),
        },
    ));
    let served = axum::serve(listener, api::router(Arc::clone(&state), guard))
        .with_graceful_shutdown(shutdown)
        .await;
    // Drain: stop upstreams and background tasks, let the writer finish.
    if let Some(gateway) = state.mcp.get() {
        gateway.shutdown();
    }
    let flush = |recording: &Option<Arc<crate::recording::Recording>>| {
        let recording = recording.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(recording) = recording {
                recording.flush();
            }
        })
    };
    let _ = flush(&recording).await;
    let _ = stop_tx.send(true);
    for task in background {
        let _ = task.await;
    }
    // Again: an upstream that ended meanwhile may have recorded more.
    let _ = flush(&recording).await;
    let final_checkpoint = {
        let worker = Arc::clone(&state);
        tokio::task::spawn_blocking(move || worker.checkpoint_now()).await
    };
    drop(state);
    let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
    if let Ok(Err(e)) = final_checkpoint {
        tracing::error!(error = %e, "cannot write the final checkpoint");
    }
    store.flush()?;
    data_dir.clear_daemon_info();
    tracing::info!(records = store.tree_size(), "intentproof daemon stopped");
    served.map_err(|e| ServeError::Other(format!("server error: {e}")))
}
