//! [`SingleFlight`]: one detached task per key; every concurrent caller
//! awaits the same result.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::oneshot;

/// The future a caller awaits: `None` when the task panicked.
pub(crate) type Flight<T> = Shared<BoxFuture<'static, Option<T>>>;

/// In-process single flight. The work runs in a spawned task, so it finishes
/// even when every caller has gone away (invariant 7).
pub(crate) struct SingleFlight<K, T: Clone> {
    flights: Mutex<HashMap<K, Flight<T>>>,
}

impl<K, T> SingleFlight<K, T>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    pub(crate) fn new() -> Self {
        Self {
            flights: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Flight<T>>> {
        self.flights.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the flight of `key`, or starts `make()` as a detached task. The
    /// entry is removed before the result is published, so a caller arriving
    /// after completion starts a new flight.
    pub(crate) fn join_or_start<F>(self: &Arc<Self>, key: &K, make: impl FnOnce() -> F) -> Flight<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let mut flights = self.lock();
        if let Some(flight) = flights.get(key) {
            return flight.clone();
        }
        let work = make();
        let (tx, rx) = oneshot::channel();
        let flight: Flight<T> = async move { rx.await.ok() }.boxed().shared();
        flights.insert(key.clone(), flight.clone());
        drop(flights);

        // Only this flight's task removes the entry, and no other flight for
        // the key can start before it does.
        let guard = Landing {
            owner: Arc::clone(self),
            key: key.clone(),
        };
        tokio::spawn(async move {
            let out = work.await;
            drop(guard);
            let _ = tx.send(out);
        });
        flight
    }

    /// How many flights are in the air.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Removes the flight's entry when its task ends, even by panic.
struct Landing<K: Hash + Eq + Clone + Send + Sync + 'static, T: Clone + Send + Sync + 'static> {
    owner: Arc<SingleFlight<K, T>>,
    key: K,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static, T: Clone + Send + Sync + 'static> Drop
    for Landing<K, T>
{
    fn drop(&mut self) {
        self.owner.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Notify;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flight = Arc::new(SingleFlight::<u32, u32>::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Notify::new());
        let mut waiters = Vec::new();
        for _ in 0..10 {
            let (runs, gate) = (runs.clone(), gate.clone());
            waiters.push(flight.join_or_start(&1, move || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
                42
            }));
        }
        gate.notify_one();
        for w in waiters {
            assert_eq!(w.await, Some(42));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flight.len(), 0);
    }

    #[tokio::test]
    async fn work_finishes_when_every_caller_is_gone() {
        let flight = Arc::new(SingleFlight::<u32, ()>::new());
        let done = Arc::new(Notify::new());
        let d = done.clone();
        drop(flight.join_or_start(&1, move || async move { d.notify_one() }));
        done.notified().await;
    }

    #[tokio::test]
    async fn a_panicking_flight_yields_none_and_is_removed() {
        let flight = Arc::new(SingleFlight::<u32, u32>::new());
        let f = flight.join_or_start(&1, || async { panic!("boom") });
        assert_eq!(f.await, None);
        assert_eq!(flight.len(), 0);
    }
}
