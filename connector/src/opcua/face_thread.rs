//! The OPC UA face's own thread: a current-thread runtime that runs the stack (sessions,
//! subscription ticks, encoding publishes) and the task that hands the change feed to
//! it.
//!
//! Why a thread of its own: on hosts with 2 cores or fewer the connector's runtime is one
//! thread (Modbus answers at bare tokio-modbus speed there, docs/performance.md "Runtime
//! threads"). On that thread a scan of 100 000 monitored tags meant ~190 ms of stack work
//! each second in one piece, during which ingest and Modbus waited, and the later part of
//! the scan reached the image up to ~100 ms late. Here that work runs beside ingest and
//! Modbus instead of between them, whatever `--threads` says.

use std::future::Future;
use tokio::runtime::{Handle, Runtime};
use tokio_util::task::TaskTracker;

/// The runtime, until [`FaceThread::run`] hands it to its thread.
#[derive(Debug)]
pub struct FaceThread {
    runtime: Runtime,
    /// Every task of the face; the thread ends once they all have.
    tasks: TaskTracker,
}

impl FaceThread {
    pub fn new() -> std::io::Result<FaceThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("opcua")
            .build()?;
        Ok(FaceThread {
            runtime,
            tasks: TaskTracker::new(),
        })
    }

    /// For building what must belong to this runtime (listeners, the stack's server):
    /// `let _in = face.handle().enter();`.
    pub fn handle(&self) -> &Handle {
        self.runtime.handle()
    }

    /// Runs `task` on the face's thread (once [`FaceThread::run`] has started it).
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn_on(task, self.runtime.handle());
    }

    /// Starts the thread; it runs the face's tasks until every one has ended (they end on
    /// the connector's cancellation), then drops the runtime. `tracker` (the connector's)
    /// waits for it, so a drain or a stop waits for the face as for any other task.
    pub fn run(self, tracker: &TaskTracker) -> std::io::Result<()> {
        let FaceThread { runtime, tasks } = self;
        tasks.close();
        let ended = tasks.clone();
        std::thread::Builder::new()
            .name("opcua".into())
            .spawn(move || runtime.block_on(ended.wait()))?;
        tracker.spawn(async move { tasks.wait().await });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test(flavor = "current_thread")]
    async fn tasks_run_on_their_own_thread_and_the_tracker_waits_for_them() {
        let face = FaceThread::new().unwrap();
        let caller = std::thread::current().id();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let finished = Arc::new(AtomicBool::new(false));
        let done = finished.clone();
        face.spawn(async move {
            let _ = tx.send(std::thread::current().id());
            let _ = release_rx.await;
            done.store(true, Ordering::SeqCst);
        });
        let tracker = TaskTracker::new();
        face.run(&tracker).unwrap();
        let ran_on = rx.await.unwrap();
        assert_ne!(ran_on, caller, "the face's task ran on the caller's thread");
        tracker.close();
        assert!(
            !tracker.is_empty(),
            "the connector's tracker must wait for the face"
        );
        release_tx.send(()).unwrap();
        tracker.wait().await;
        assert!(finished.load(Ordering::SeqCst));
    }
}
