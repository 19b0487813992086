//! `logveil agent --config FILE`: the sidecar's pipeline.
//!
//! ```text
//! sources ──Block──► batcher ──Batch──► sealer ──► sinks (archive)
//! (read + redact     (count/bytes/age)  (seal, write every sink, advance chain and
//!  on the blocking                       checkpoints in data_dir/state.json)
//!  pool)
//! ```
//!
//! Every channel is bounded, so a slow sink holds the sources back (they stop reading; files
//! wait on disk) instead of growing memory. Shutdown (SIGTERM, SIGINT, or `exit_after_idle`)
//! has a fixed order: stop the sources (no new reads), drain what they already handed over,
//! flush the last partial batch, write it, persist chain and checkpoints, exit 0. A second
//! signal exits at once (status 1): nothing durable is lost, lines past the last checkpoint
//! are read again on the next start.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use logveil_patterns::Redactor;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::batch::{Batch, Batcher};
use crate::checkpoint::{lock_data_dir, ChainState, StateStore};
use crate::config::{Config, LogLevel, SourceConfig};
use crate::event::Origin;
use crate::keys::{self, PublicKey, SealKey};
use crate::seal::{self, Sealed, GENESIS_HASH};
use crate::sink::forward::Forwarder;
use crate::sink::Sink;
use crate::source::{self, Block, Ctx};
use crate::spool::{Full, Spool};

/// Blocks queued between the sources and the batcher.
const BLOCK_QUEUE: usize = 16;
/// Batches queued between the batcher and the sealer.
const BATCH_QUEUE: usize = 2;
/// Longest wait between retries of a failing sink.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// While batches keep coming, the state is persisted at least this often (and always when
/// the sealer has caught up).
const STATE_EVERY: Duration = Duration::from_millis(500);

/// When the sources last read something (for `exit_after_idle`).
pub struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Activity {
    /// Something was read.
    pub fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// A block is on its way to the batcher.
    pub fn block_sent(&self) {
        self.touch();
    }

    /// How long nothing was read.
    pub fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Resolves once `stop` is true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&s| s).await;
}

fn init_logging(level: LogLevel) {
    let level = match std::env::var("LOGVEIL_LOG").as_deref() {
        Ok("error") => tracing::Level::ERROR,
        Ok("warn") => tracing::Level::WARN,
        Ok("info") => tracing::Level::INFO,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        _ => match level {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
        },
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .try_init();
}

/// `logveil agent --config FILE`. Exit 2 on a configuration problem, 1 on a runtime failure
/// (a sink that kept failing at shutdown, unusable state), 0 after a clean shutdown.
pub fn agent_main(config: &Path) -> ExitCode {
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("logveil: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(cfg.log_level);
    let redactor = match cfg.build_redactor() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("logveil: {e}");
            return ExitCode::from(2);
        }
    };
    let key = match keys::load_for_config(&cfg, true) {
        Ok(Some(k)) => k,
        Ok(None) => unreachable!("a missing key is generated or refused"),
        Err(e) => {
            eprintln!("logveil: {e}");
            return ExitCode::from(2);
        }
    };
    let fail = |msg: String| {
        tracing::error!("{msg}");
        ExitCode::from(1)
    };
    let _lock = match lock_data_dir(&cfg.data_dir) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let (mut state, loaded) = match StateStore::open(&cfg.data_dir) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut sinks = Vec::new();
    for s in &cfg.sinks {
        match Sink::open(s) {
            Ok(s) => sinks.push(s),
            Err(e) => return fail(e),
        }
    }
    let mut forwarders = Vec::new();
    for f in &cfg.forwards {
        match Forwarder::open(f, &cfg.base) {
            Ok(f) => forwarders.push(f),
            Err(e) => {
                eprintln!("logveil: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let spool = if forwarders.is_empty() {
        None
    } else {
        let names: Vec<String> = forwarders.iter().map(|f| f.name().to_string()).collect();
        match Spool::open(cfg.spool.clone(), &names) {
            // A wrong spool key, or encrypted records and no key: the configuration's fault.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                eprintln!("logveil: {e}");
                return ExitCode::from(2);
            }
            Ok(s) => {
                tracing::info!(
                    spool = %s.dir().display(),
                    batches = s.len(),
                    bytes = s.bytes(),
                    corrupt = s.replay.corrupt,
                    torn = s.replay.torn,
                    unauthenticated = s.replay.unauthenticated,
                    encrypted = cfg.spool.key.is_some(),
                    "spool replayed"
                );
                Some(Arc::new(Mutex::new(s)))
            }
            Err(e) => return fail(format!("spool {}: {e}", cfg.spool.dir.display())),
        }
    };
    if let Err(e) = reconcile_chain(&mut state, &sinks, spool.as_deref(), &key) {
        return fail(e);
    }
    let metrics = match &cfg.metrics {
        None => None,
        Some(m) => match crate::metrics::bind(m) {
            Ok(l) => Some((l, m.clone())),
            Err(e) => return fail(e),
        },
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("logveil")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    let outputs = Outputs {
        sinks,
        forwarders,
        spool,
        metrics,
    };
    let code = rt.block_on(run(cfg, redactor, key, state, loaded, outputs));
    rt.shutdown_timeout(Duration::from_millis(200));
    code
}

/// Makes `state.chain` the tip of what the sinks hold. A crash between writing a batch and
/// persisting the state leaves the sinks one (or more) batches ahead: those batches are
/// checked (signature with our key, link to the tip) and adopted, and copied to any sink that
/// lacks them. A sink batch that does not continue the chain stops the agent rather than
/// forking the chain.
fn reconcile_chain(
    state: &mut StateStore,
    sinks: &[Sink],
    spool: Option<&Mutex<Spool>>,
    key: &SealKey,
) -> Result<(), String> {
    let public = PublicKey::from_raw(key.public())?;
    if let Some(c) = &state.chain {
        if c.key_id != key.key_id() {
            return Err(format!(
                "the chain in data_dir was sealed with key {} but [seal] key is {}; use that key, or a new data_dir and archive directory",
                c.key_id,
                key.key_id()
            ));
        }
    }
    let mut tip = state.chain.clone().unwrap_or(ChainState {
        seq: 0,
        hash: GENESIS_HASH.into(),
        key_id: key.key_id().into(),
    });
    let read_any = |seq: u64| -> Result<Option<Vec<u8>>, String> {
        for s in sinks {
            match s.read(seq) {
                Ok(Some(b)) => return Ok(Some(b)),
                Ok(None) => {}
                Err(e) => return Err(format!("{}: {e}", s.name())),
            }
        }
        if let Some(sp) = spool {
            return sp
                .lock()
                .expect("spool lock")
                .read(seq)
                .map_err(|e| format!("spool: {e}"));
        }
        Ok(None)
    };
    let check = |bytes: &[u8], seq: u64| -> Result<(String, String), String> {
        let p = seal::parse(bytes).map_err(|e| format!("batch {seq} in the archive: {e}"))?;
        if !public.verify(p.header_line, &p.signature) || p.header.seq != seq {
            return Err(format!(
                "batch {seq} in the archive is not signed by key {}; refusing to continue that chain",
                key.key_id()
            ));
        }
        Ok((seal::header_hash(p.header_line), p.header.prev_hash))
    };
    if state.chain.is_none() {
        let highest = sinks
            .iter()
            .filter_map(|s| s.highest_seq().ok().flatten())
            .chain(spool.and_then(|s| s.lock().expect("spool lock").highest_seq()))
            .max();
        if let Some(h) = highest {
            let bytes = read_any(h)?.ok_or_else(|| format!("batch {h} vanished"))?;
            let (hash, _) = check(&bytes, h)?;
            tracing::warn!(
                seq = h,
                "no chain state in data_dir but the archive holds batches: continuing after the newest"
            );
            tip = ChainState {
                seq: h,
                hash,
                key_id: key.key_id().into(),
            };
        }
    }
    let start = tip.seq;
    while let Some(bytes) = read_any(tip.seq + 1)? {
        let seq = tip.seq + 1;
        let (hash, prev) = check(&bytes, seq)?;
        if prev != tip.hash {
            return Err(format!(
                "batch {seq} in the archive does not link to batch {} of the chain state; refusing to fork the chain",
                tip.seq
            ));
        }
        let sealed = Sealed {
            seq,
            hash: hash.clone(),
            bytes,
        };
        for s in sinks {
            if s.read(seq).map_err(|e| e.to_string())?.is_none() {
                s.write(&sealed).map_err(|e| format!("{}: {e}", s.name()))?;
            }
        }
        if let Some(sp) = spool {
            let mut sp = sp.lock().expect("spool lock");
            if !sp.delivered_by_all(seq) && sp.read(seq).map_err(|e| e.to_string())?.is_none() {
                // Over the cap is fine here: this batch was sealed before the stop.
                sp.append(seq, &sealed.bytes)
                    .map_err(|e| format!("spool: {e}"))?
                    .ok();
            }
        }
        tip.seq = seq;
        tip.hash = hash;
    }
    if tip.seq != start || (state.chain.is_none() && tip.seq > 0) {
        tracing::info!(
            seq = tip.seq,
            "adopted batches written just before the last stop"
        );
        state.chain = Some(tip);
        state
            .persist()
            .map_err(|e| format!("persisting state: {e}"))?;
    }
    Ok(())
}

/// Where sealed batches go: local sinks written by the sealer, and forwarding sinks fed from
/// the spool.
struct Outputs {
    sinks: Vec<Sink>,
    forwarders: Vec<Forwarder>,
    spool: Option<Arc<Mutex<Spool>>>,
    /// The bound `/metrics` endpoint, if configured.
    metrics: Option<(std::net::TcpListener, crate::metrics::MetricsConfig)>,
}

async fn run(
    cfg: Config,
    redactor: Redactor,
    key: SealKey,
    state: StateStore,
    loaded: Vec<(u64, crate::checkpoint::FileEntry)>,
    outputs: Outputs,
) -> ExitCode {
    let Outputs {
        sinks,
        forwarders,
        spool,
        metrics,
    } = outputs;
    let (stop_tx, stop_rx) = watch::channel(false);
    // Signals first: from here on SIGTERM means a graceful shutdown.
    let signals = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => tokio::spawn(on_signals(t, i, stop_tx.clone())),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return ExitCode::from(1);
        }
    };
    let (metrics_stop, metrics_stop_rx) = watch::channel(false);
    let metrics_task = metrics.map(|(l, m)| {
        tracing::info!(address = %m.address, "serving /metrics and /health");
        tokio::spawn(crate::metrics::serve(l, m, spool.clone(), metrics_stop_rx))
    });
    let activity = Arc::new(Activity::default());
    let origin = Origin::detect(cfg.host.as_deref());
    let (block_tx, block_rx) = mpsc::channel::<Block>(BLOCK_QUEUE);
    let (batch_tx, batch_rx) = mpsc::channel::<Batch>(BATCH_QUEUE);
    let ctx = Ctx {
        redactor: redactor.clone(),
        origin: origin.clone(),
        tx: block_tx,
        stop: stop_rx.clone(),
        activity: activity.clone(),
        max_block_events: cfg.batch.max_events,
        lineages: Arc::new(AtomicU64::new(state.next_lineage())),
    };
    tracing::info!(
        key_id = key.key_id(),
        sources = cfg.sources.len(),
        sinks = %sinks.iter().map(Sink::name).chain(forwarders.iter().map(|f| f.name().to_string())).collect::<Vec<_>>().join(", "),
        next_seq = state.chain.as_ref().map_or(1, |c| c.seq + 1),
        host = %origin.host,
        job = origin.job.as_deref().unwrap_or("-"),
        "agent started"
    );
    let mut sources = JoinSet::new();
    for s in &cfg.sources {
        match s {
            SourceConfig::File(fc) => {
                sources.spawn(source::file::run(fc.clone(), ctx.clone(), loaded.clone()));
            }
            SourceConfig::Stdin => {
                sources.spawn(source::stdin::run(ctx.clone()));
            }
        }
    }
    drop(ctx);
    let batcher = tokio::spawn(batch_loop(
        block_rx,
        batch_tx,
        Batcher::new(cfg.batch, redactor.ids().to_vec()),
    ));
    let host = origin.host.clone();
    let tip0 = spool
        .as_ref()
        .and_then(|s| s.lock().expect("spool lock").highest_seq())
        .unwrap_or(0);
    let (tip_tx, tip_rx) = watch::channel(tip0);
    let (drain_tx, drain_rx) = watch::channel(false);
    let (halt_tx, halt_rx) = watch::channel(false);
    let mut forwarding = JoinSet::new();
    if let Some(sp) = &spool {
        for f in forwarders {
            forwarding.spawn(f.run(
                sp.clone(),
                tip_rx.clone(),
                drain_rx.clone(),
                halt_rx.clone(),
            ));
        }
    }
    let sealer = tokio::spawn(seal_loop(
        batch_rx,
        key,
        sinks,
        spool.clone().map(|s| (s, tip_tx, cfg.drain_timeout)),
        state,
        stop_rx.clone(),
        host,
    ));
    let idle = cfg.exit_after_idle.map(|d| {
        let (a, s) = (activity.clone(), stop_tx.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100).min(d / 4)).await;
                if a.idle_for() >= d {
                    tracing::info!(idle = ?d, "nothing read for exit_after_idle: shutting down");
                    let _ = s.send(true);
                    return;
                }
            }
        })
    });
    while sources.join_next().await.is_some() {}
    tracing::info!("sources stopped; draining");
    let _ = batcher.await;
    let result = sealer.await;
    if !forwarding.is_empty() {
        // The spool keeps whatever is not delivered by the deadline; the next start sends it.
        let _ = drain_tx.send(true);
        let drained = tokio::time::timeout(cfg.drain_timeout, async {
            while forwarding.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            let left: Vec<String> = spool
                .as_ref()
                .map(|s| {
                    let s = s.lock().expect("spool lock");
                    cfg.forwards
                        .iter()
                        .map(|f| format!("{}: {}", f.name, s.pending(&f.name)))
                        .collect()
                })
                .unwrap_or_default();
            tracing::warn!(
                pending = %left.join(", "),
                "forwarding sinks did not catch up within drain_timeout; the spool keeps the rest for the next start"
            );
            let _ = halt_tx.send(true);
            while forwarding.join_next().await.is_some() {}
        }
    }
    signals.abort();
    let _ = metrics_stop.send(true);
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    if let Some(i) = idle {
        i.abort();
    }
    match result {
        Ok(Ok(tip)) => {
            tracing::info!(
                seq = tip.as_ref().map_or(0, |t| t.seq),
                hash = tip.as_ref().map_or(GENESIS_HASH, |t| t.hash.as_str()),
                "stopped; chain tip"
            );
            ExitCode::SUCCESS
        }
        _ => ExitCode::from(1),
    }
}

async fn on_signals(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
    stop: watch::Sender<bool>,
) {
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(
        signal = name,
        "shutting down: stopping sources, draining, flushing, persisting (a second signal exits at once)"
    );
    let _ = stop.send(true);
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::warn!("second signal: exiting now; lines after the last checkpoint are read again on the next start");
    std::process::exit(1);
}

async fn batch_loop(mut rx: mpsc::Receiver<Block>, tx: mpsc::Sender<Batch>, mut batcher: Batcher) {
    let mut ready = Vec::new();
    loop {
        let deadline = batcher.deadline();
        let next = tokio::select! {
            b = rx.recv() => Some(b),
            _ = tokio::time::sleep_until(deadline.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std)), if deadline.is_some() => None,
        };
        let done = match next {
            Some(Some(block)) => {
                batcher.push(block, &mut ready);
                false
            }
            Some(None) => {
                ready.extend(batcher.flush());
                true
            }
            None => {
                ready.extend(batcher.flush());
                false
            }
        };
        for b in ready.drain(..) {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        if done {
            return;
        }
    }
}

/// Retries `op` with exponential backoff until it succeeds, or fails while shutting down.
async fn retry<T>(
    what: &str,
    stop: &mut watch::Receiver<bool>,
    mut op: impl FnMut() -> Result<T, String>,
) -> Result<T, ()> {
    let mut delay = Duration::from_millis(100);
    loop {
        match tokio::task::block_in_place(&mut op) {
            Ok(v) => return Ok(v),
            Err(e) => {
                tracing::error!(error = %e, "{what} failed");
                if *stop.borrow() {
                    tracing::error!("{what}: giving up while shutting down; nothing is lost (checkpoints were not advanced past it)");
                    return Err(());
                }
                tracing::warn!(retry_in = ?delay, "{what}: will retry");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped(stop) => {}
                }
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn seal_loop(
    mut rx: mpsc::Receiver<Batch>,
    key: SealKey,
    sinks: Vec<Sink>,
    spool: Option<(Arc<Mutex<Spool>>, watch::Sender<u64>, Duration)>,
    mut state: StateStore,
    mut stop: watch::Receiver<bool>,
    host: String,
) -> Result<Option<ChainState>, ()> {
    let mut persisted = Instant::now();
    while let Some(batch) = rx.recv().await {
        if batch.content.count > 0 {
            let (seq, prev) = state
                .chain
                .as_ref()
                .map_or((1, GENESIS_HASH.to_string()), |c| {
                    (c.seq + 1, c.hash.clone())
                });
            let sealed = seal::seal(&key, seq, &prev, &host, &batch.content);
            for s in &sinks {
                retry(
                    &format!("writing batch {seq} to {}", s.name()),
                    &mut stop,
                    || s.write(&sealed).map_err(|e| e.to_string()),
                )
                .await?;
            }
            if let Some((sp, tip, patience)) = &spool {
                to_spool(sp, &sealed, &mut stop, *patience).await?;
                let _ = tip.send(seq);
            }
            crate::metrics::global().sealed(
                batch.content.count,
                batch.content.payload.len() as u64,
                &batch.content.masks,
            );
            tracing::debug!(
                seq,
                events = batch.content.count,
                bytes = batch.content.payload.len(),
                masks = batch.content.masks.values().sum::<u64>(),
                "sealed batch"
            );
            state.chain = Some(ChainState {
                seq,
                hash: sealed.hash,
                key_id: key.key_id().into(),
            });
        }
        for f in &batch.forgets {
            state.forget(*f);
        }
        for (lineage, entry) in &batch.positions {
            state.advance(*lineage, entry);
        }
        // The state may lag the sinks (a crash then re-reads a little more; the next start
        // adopts the batches the sinks hold), never lead them. Under load one write covers
        // several batches.
        if rx.is_empty() || persisted.elapsed() >= STATE_EVERY {
            retry("persisting state", &mut stop, || {
                state.persist().map_err(|e| e.to_string())
            })
            .await?;
            persisted = Instant::now();
        }
    }
    retry("persisting state", &mut stop, || {
        state.persist().map_err(|e| e.to_string())
    })
    .await?;
    Ok(state.chain.clone())
}

/// Appends a sealed batch to the spool. While the spool is full this waits (the bounded
/// queues behind it then pause the sources); while shutting down it waits `patience` at most
/// and then gives up (the checkpoints stay behind the batch, so nothing is lost).
async fn to_spool(
    spool: &Mutex<Spool>,
    sealed: &Sealed,
    stop: &mut watch::Receiver<bool>,
    patience: Duration,
) -> Result<(), ()> {
    let mut full_since: Option<Instant> = None;
    let mut delay = Duration::from_millis(100);
    loop {
        let r = tokio::task::block_in_place(|| {
            spool
                .lock()
                .expect("spool lock")
                .append(sealed.seq, &sealed.bytes)
        });
        match r {
            Ok(Ok(())) => {
                crate::metrics::global().set_spool_full(false);
                if let Some(t) = full_since {
                    tracing::info!(waited = ?t.elapsed(), "spool has room again: sources resume");
                }
                return Ok(());
            }
            Ok(Err(Full)) => {
                crate::metrics::global().set_spool_full(true);
                let since = *full_since.get_or_insert_with(|| {
                    tracing::warn!(
                        seq = sealed.seq,
                        "spool is full (max_bytes): sources pause until the sinks catch up"
                    );
                    Instant::now()
                });
                if *stop.borrow() && since.elapsed() >= patience {
                    tracing::error!("spool still full while shutting down; giving up (checkpoints were not advanced past it)");
                    return Err(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, seq = sealed.seq, "writing to the spool failed");
                if *stop.borrow() {
                    tracing::error!("spool: giving up while shutting down; nothing is lost (checkpoints were not advanced past it)");
                    return Err(());
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped(stop) => {}
                }
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}
