//! [`Detached`]: tasks that outlive the call that started them (a rescue of
//! an answer, a consumed mark retried in the background), counted so a
//! graceful shutdown can wait for them.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Spawns and counts detached tasks.
#[derive(Default)]
pub(crate) struct Detached {
    running: AtomicUsize,
    /// Woken whenever the last task ends.
    idle: Notify,
}

/// Ends one task's count when dropped (the task finished or panicked).
struct Running(Arc<Detached>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Detached {
    /// Runs `task` on its own, counted until it ends.
    pub(crate) fn spawn(self: &Arc<Self>, task: impl Future<Output = ()> + Send + 'static) {
        self.running.fetch_add(1, Ordering::AcqRel);
        let running = Running(Arc::clone(self));
        tokio::spawn(async move {
            let _running = running;
            task.await;
        });
    }

    /// How many are running.
    pub(crate) fn len(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Resolves once none is running.
    pub(crate) async fn idle(&self) {
        loop {
            let ended = self.idle.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.len() == 0 {
                return;
            }
            ended.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_every_task_even_one_that_panics() {
        let detached = Arc::new(Detached::default());
        detached.idle().await;
        let gate = Arc::new(Notify::new());
        let open = Arc::clone(&gate);
        detached.spawn(async move { open.notified().await });
        detached.spawn(async { panic!("a detached task failed") });
        let idle = {
            let detached = Arc::clone(&detached);
            tokio::spawn(async move { detached.idle().await })
        };
        tokio::task::yield_now().await;
        assert!(!idle.is_finished());
        gate.notify_one();
        idle.await.unwrap();
        assert_eq!(detached.len(), 0);
    }
}
