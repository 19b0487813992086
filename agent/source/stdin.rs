//! The stdin source: reads standard input to its end (a pipe from a job runner, say). There
//! are no checkpoints: a stream cannot be re-read. Events carry `source = "-"` and the byte
//! offset in the stream. At end of input an unterminated last line is emitted and the source
//! ends; when it was the only source, the agent then flushes and exits.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{nth_newline, redact_block, Block, Ctx, LineRedactor, READ_CHUNK};
use crate::pipeline::stopped;

/// The `source` of stdin events.
pub const SOURCE_NAME: &str = "-";

/// Runs until end of input or until told to stop.
pub async fn run(ctx: Ctx) {
    let (tx, mut rx) = mpsc::channel::<Block>(2);
    let quit = Arc::new(AtomicBool::new(false));
    let (redactor, origin, max) = (
        ctx.redactor.clone(),
        ctx.origin.clone(),
        ctx.max_block_events,
    );
    let quit2 = quit.clone();
    // A plain thread, not the blocking pool: a read that never returns (an idle pipe) must
    // not hold up the runtime's shutdown.
    let spawned = std::thread::Builder::new()
        .name("logveil-stdin".into())
        .spawn(move || {
            let mut lr = LineRedactor::new(&redactor, 0);
            let mut buf = vec![0; READ_CHUNK];
            let mut stdin = std::io::stdin().lock();
            loop {
                if quit2.load(Ordering::Relaxed) {
                    return;
                }
                match stdin.read(&mut buf) {
                    Ok(0) => {
                        let b = redact_block(&mut lr, b"", &origin, SOURCE_NAME, true);
                        if b.events > 0 {
                            let _ = tx.blocking_send(b);
                        }
                        return;
                    }
                    Ok(n) => {
                        let mut rest = &buf[..n];
                        while !rest.is_empty() {
                            let cut = nth_newline(rest, max).map_or(rest.len(), |i| i + 1);
                            let b =
                                redact_block(&mut lr, &rest[..cut], &origin, SOURCE_NAME, false);
                            rest = &rest[cut..];
                            if b.events > 0 && tx.blocking_send(b).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::error!(error = %e, "reading stdin failed; the stdin source ends");
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the stdin reader");
        return;
    }
    let mut stop = ctx.stop.clone();
    loop {
        tokio::select! {
            b = rx.recv() => match b {
                Some(b) => {
                    ctx.activity.touch();
                    if !ctx.send(b).await {
                        break;
                    }
                }
                None => break,
            },
            _ = stopped(&mut stop) => break,
        }
    }
    quit.store(true, Ordering::Relaxed);
}
