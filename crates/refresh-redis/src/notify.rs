//! The notification hub: ONE subscriber connection per token cache, owned
//! by a task that multiplexes every waiter's subscription.
//!
//! A subscription is acknowledged only after Redis confirmed `SUBSCRIBE`,
//! so a publish after `subscribe_refreshed` returned always reaches it.
//! When the connection drops, every pending notice resolves `None`
//! (waiters fall back to polling) and the task reconnects with backoff;
//! subscriptions asked for while it is down fail `Unavailable`. The task
//! ends when the last clone of its cache is dropped.
//!
//! Cluster: classic `PUBLISH` is forwarded to every node over the cluster
//! bus, so one subscriber connection to any node hears every channel.
//! Sharded pub/sub (`SSUBSCRIBE`) would need one subscriber connection per
//! shard and resubscription on every slot migration; at refresh rates (a
//! few small messages per token lifetime) the bus fan-out costs nothing
//! worth that.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use redis::Client;
use redis::aio::{PubSubSink, PubSubStream};
use refresh_core::StorageError;
use refresh_core::ports::RefreshNotice;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::config::RedisConfig;
use crate::error::{storage_error, timed_out};

/// Prune dropped waiters every this many subscriptions.
const PRUNE_EVERY: u32 = 64;

struct Subscribe {
    channel: String,
    notice: oneshot::Sender<Option<u64>>,
    done: oneshot::Sender<Result<(), StorageError>>,
}

/// The handle of a hub task.
pub(crate) struct Hub {
    commands: mpsc::UnboundedSender<Subscribe>,
}

impl Hub {
    /// Starts the task for the server (or any node) of `nodes`.
    pub(crate) fn spawn(nodes: Vec<String>, config: &RedisConfig) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let task = HubTask {
            nodes,
            connect_timeout: config.connect_timeout,
            command_timeout: config.command_timeout,
            backoff: config.reconnect_backoff,
            max_backoff: config.max_reconnect_backoff,
            commands: rx,
            waiters: HashMap::new(),
        };
        tokio::spawn(task.run());
        Self { commands }
    }

    /// A notice for the next publish on `channel`, once Redis confirmed the
    /// subscription.
    pub(crate) async fn subscribe(
        &self,
        channel: String,
        timeout: Duration,
    ) -> Result<RefreshNotice, StorageError> {
        const OP: &str = "redis_subscribe_refreshed";
        let (notice, heard) = oneshot::channel();
        let (done, confirmed) = oneshot::channel();
        let request = Subscribe {
            channel,
            notice,
            done,
        };
        if self.commands.send(request).is_err() {
            return Err(StorageError::unavailable(OP, "notification task ended"));
        }
        match tokio::time::timeout(timeout, confirmed).await {
            Ok(Ok(Ok(()))) => Ok(RefreshNotice::new(
                async move { heard.await.ok().flatten() },
            )),
            Ok(Ok(Err(error))) => Err(error),
            Ok(Err(_)) => Err(StorageError::unavailable(OP, "notification task ended")),
            Err(_) => Err(timed_out(OP)),
        }
    }
}

struct HubTask {
    nodes: Vec<String>,
    connect_timeout: Duration,
    command_timeout: Duration,
    backoff: Duration,
    max_backoff: Duration,
    commands: mpsc::UnboundedReceiver<Subscribe>,
    waiters: HashMap<String, Vec<oneshot::Sender<Option<u64>>>>,
}

impl HubTask {
    async fn run(mut self) {
        let mut pause = self.backoff;
        let mut node = 0;
        loop {
            match self.connect(&self.nodes[node % self.nodes.len()]).await {
                Ok((sink, stream)) => {
                    pause = self.backoff;
                    if !self.serve(sink, stream).await {
                        return;
                    }
                    debug!("notification connection dropped; reconnecting");
                }
                Err(error) => {
                    node += 1;
                    debug!(kind = %error.kind(), "notification connection failed");
                }
            }
            // Every pending notice resolves `None`: the channel closed.
            self.waiters.clear();
            let wake = tokio::time::sleep(pause);
            tokio::pin!(wake);
            loop {
                tokio::select! {
                    () = &mut wake => break,
                    request = self.commands.recv() => match request {
                        None => return,
                        Some(request) => {
                            let down = StorageError::unavailable(
                                "redis_subscribe_refreshed",
                                "notification connection is down",
                            );
                            let _ = request.done.send(Err(down));
                        }
                    },
                }
            }
            pause = (pause * 2).min(self.max_backoff);
        }
    }

    async fn connect(&self, url: &str) -> Result<(PubSubSink, PubSubStream), StorageError> {
        const OP: &str = "redis_pubsub_connect";
        let client = Client::open(url).map_err(|e| storage_error(OP, &e))?;
        match tokio::time::timeout(self.connect_timeout, client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => Ok(pubsub.split()),
            Ok(Err(error)) => Err(storage_error(OP, &error)),
            Err(_) => Err(timed_out(OP)),
        }
    }

    /// Serves subscriptions and messages until the connection drops
    /// (`true`) or the cache is gone (`false`).
    async fn serve(&mut self, mut sink: PubSubSink, mut stream: PubSubStream) -> bool {
        let mut since_prune = 0;
        loop {
            tokio::select! {
                request = self.commands.recv() => {
                    let Some(request) = request else { return false };
                    since_prune += 1;
                    if since_prune >= PRUNE_EVERY {
                        since_prune = 0;
                        if !self.prune(&mut sink).await {
                            let _ = request.done.send(Err(StorageError::unavailable(
                                "redis_subscribe_refreshed",
                                "notification connection dropped",
                            )));
                            return true;
                        }
                    }
                    if !self.waiters.contains_key(&request.channel) {
                        let call = sink.subscribe(&request.channel);
                        let result = match tokio::time::timeout(self.command_timeout, call).await {
                            Ok(Ok(())) => Ok(()),
                            Ok(Err(error)) => Err(storage_error("redis_subscribe_refreshed", &error)),
                            Err(_) => Err(timed_out("redis_subscribe_refreshed")),
                        };
                        if let Err(error) = result {
                            warn!(kind = %error.kind(), "could not subscribe to refresh notifications");
                            let _ = request.done.send(Err(error));
                            return true;
                        }
                    }
                    self.waiters.entry(request.channel).or_default().push(request.notice);
                    let _ = request.done.send(Ok(()));
                }
                message = stream.next() => {
                    let Some(message) = message else { return true };
                    let channel = message.get_channel_name().to_owned();
                    // An unreadable payload still wakes the waiters: they
                    // re-check what they wait on.
                    let version = message
                        .get_payload::<String>()
                        .ok()
                        .and_then(|p| p.parse::<u64>().ok())
                        .unwrap_or(0);
                    if let Some(waiters) = self.waiters.remove(&channel) {
                        for waiter in waiters {
                            let _ = waiter.send(Some(version));
                        }
                    }
                    let call = sink.unsubscribe(&channel);
                    if !matches!(tokio::time::timeout(self.command_timeout, call).await, Ok(Ok(()))) {
                        return true;
                    }
                }
            }
        }
    }

    /// Drops waiters whose notice is gone and unsubscribes their channels;
    /// `false` when the connection failed.
    async fn prune(&mut self, sink: &mut PubSubSink) -> bool {
        let mut idle = Vec::new();
        for (channel, waiters) in &mut self.waiters {
            waiters.retain(|w| !w.is_closed());
            if waiters.is_empty() {
                idle.push(channel.clone());
            }
        }
        for channel in idle {
            self.waiters.remove(&channel);
            let call = sink.unsubscribe(&channel);
            if !matches!(
                tokio::time::timeout(self.command_timeout, call).await,
                Ok(Ok(()))
            ) {
                return false;
            }
        }
        true
    }
}
