//! Group commit: one writer task turns many concurrent writes into few transactions.
//!
//! Every caller queues its [`WriteOp`] with a oneshot and waits. The writer takes the first
//! pending write, keeps collecting for [`BatchConfig::window`] (or until
//! [`BatchConfig::max_batch`] writes are pending), commits them all in one transaction, and
//! only then answers every waiter. So 10,000 PUT/s cost a few hundred fsyncs per second, and
//! no caller is told "stored" before its write is durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::{Store, StoreError, WriteOp};

/// Tuning of the writer task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// How long the writer keeps collecting after the first write of a batch.
    pub window: Duration,
    /// Most writes in one transaction.
    pub max_batch: usize,
    /// Most writes waiting for the writer; callers beyond it wait for room (backpressure).
    pub queue: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(3),
            max_batch: 2000,
            queue: 50_000,
        }
    }
}

struct Pending {
    op: WriteOp,
    done: oneshot::Sender<Result<(), StoreError>>,
}

#[derive(Debug, Default)]
struct Stats {
    commits: AtomicU64,
    writes: AtomicU64,
}

/// The handle callers write through; cheap to clone. The writer task ends when every handle
/// is dropped, after committing what was queued.
#[derive(Clone)]
pub struct WriteBatcher {
    tx: mpsc::Sender<Pending>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for WriteBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatcher")
            .field("commits", &self.commits())
            .field("writes", &self.writes())
            .finish()
    }
}

impl WriteBatcher {
    /// Starts the writer task on the current runtime.
    pub fn spawn(store: Arc<dyn Store>, config: BatchConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let stats = Arc::new(Stats::default());
        tokio::spawn(writer(store, config, rx, stats.clone()));
        Self { tx, stats }
    }

    /// Queues `op` and waits until the transaction holding it has committed.
    pub async fn write(&self, op: WriteOp) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Pending { op, done })
            .await
            .map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues `op` without waiting for its commit (advisory writes such as a new
    /// registration state). Fails if the queue is full or the writer has stopped.
    pub fn submit(&self, op: WriteOp) -> Result<(), StoreError> {
        let (done, _) = oneshot::channel();
        self.tx
            .try_send(Pending { op, done })
            .map_err(|_| StoreError::Closed)
    }

    /// Transactions committed so far (successful or not).
    pub fn commits(&self) -> u64 {
        self.stats.commits.load(Ordering::Relaxed)
    }

    /// Writes committed so far.
    pub fn writes(&self) -> u64 {
        self.stats.writes.load(Ordering::Relaxed)
    }
}

async fn writer(
    store: Arc<dyn Store>,
    config: BatchConfig,
    mut rx: mpsc::Receiver<Pending>,
    stats: Arc<Stats>,
) {
    let max = config.max_batch.max(1);
    let mut ops = Vec::with_capacity(max);
    let mut waiters = Vec::with_capacity(max);
    while let Some(first) = rx.recv().await {
        ops.push(first.op);
        waiters.push(first.done);
        let deadline = tokio::time::Instant::now() + config.window;
        while ops.len() < max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => {
                    ops.push(p.op);
                    waiters.push(p.done);
                }
                // Window over, or every handle dropped: commit what we have.
                Ok(None) | Err(_) => break,
            }
        }
        let result = store.apply(&ops).await;
        stats.commits.fetch_add(1, Ordering::Relaxed);
        match &result {
            Ok(()) => {
                stats.writes.fetch_add(ops.len() as u64, Ordering::Relaxed);
                metrics::counter!("vigil_store_commits_total").increment(1);
                metrics::histogram!("vigil_store_batch_size").record(ops.len() as f64);
            }
            Err(error) => {
                warn!(%error, writes = ops.len(), "store batch failed");
                metrics::counter!("vigil_store_commit_errors_total").increment(1);
            }
        }
        for w in waiters.drain(..) {
            // A caller that gave up (its request was cancelled) no longer listens.
            let _ = w.send(result.clone());
        }
        ops.clear();
    }
}
