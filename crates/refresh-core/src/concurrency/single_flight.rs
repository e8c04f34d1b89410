//! [`SingleFlight`]: one detached task per key; every concurrent caller
//! awaits the same result.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::{Notify, oneshot};

/// The future a caller awaits: `None` when the task panicked.
pub(crate) type Flight<T> = Shared<BoxFuture<'static, Option<T>>>;

/// In-process single flight. The work runs in a spawned task, so it finishes
/// even when every caller has gone away (invariant 7).
pub(crate) struct SingleFlight<K, T: Clone> {
    flights: Mutex<HashMap<K, Flight<T>>>,
    /// Woken whenever the last flight lands.
    idle: Notify,
}

impl<K, T> SingleFlight<K, T>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    pub(crate) fn new() -> Self {
        Self {
            flights: Mutex::new(HashMap::new()),
            idle: Notify::new(),
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
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Resolves once no flight is in the air (at once when none is).
    pub(crate) async fn idle(&self) {
        loop {
            let landed = self.idle.notified();
            tokio::pin!(landed);
            landed.as_mut().enable();
            if self.lock().is_empty() {
                return;
            }
            landed.await;
        }
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
        let mut flights = self.owner.lock();
        flights.remove(&self.key);
        if flights.is_empty() {
            self.owner.idle.notify_waiters();
        }
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
    async fn idle_resolves_once_every_flight_has_landed() {
        let flight = Arc::new(SingleFlight::<u32, ()>::new());
        flight.idle().await;
        let gates = [Arc::new(Notify::new()), Arc::new(Notify::new())];
        let mut calls = Vec::new();
        for (key, gate) in gates.iter().enumerate() {
            let gate = Arc::clone(gate);
            calls.push(flight.join_or_start(&(key as u32), move || async move {
                gate.notified().await;
            }));
        }
        let idle = {
            let flight = Arc::clone(&flight);
            tokio::spawn(async move { flight.idle().await })
        };
        gates[0].notify_one();
        calls.remove(0).await;
        assert!(!idle.is_finished(), "one flight is still in the air");
        assert_eq!(flight.len(), 1);
        gates[1].notify_one();
        idle.await.unwrap();
        assert_eq!(flight.len(), 0);
    }

    #[tokio::test]
    async fn a_panicking_flight_yields_none_and_is_removed() {
        let flight = Arc::new(SingleFlight::<u32, u32>::new());
        let f = flight.join_or_start(&1, || async { panic!("boom") });
        assert_eq!(f.await, None);
        assert_eq!(flight.len(), 0);
    }
}
