//! The notification hub: ONE subscriber connection per token cache, owned
//! by a task that multiplexes every waiter's subscription.
//!
//! A subscription is acknowledged only after Redis confirmed `SUBSCRIBE`,
//! so a publish after `subscribe_refreshed` returned always reaches it.
//! When the connection drops, every pending notice resolves `None`
//! (waiters fall back to polling) and the task reconnects with backoff;
//! subscriptions asked for while it is down fail `Unavailable`. A command
//! that is only slow (a subscribe or unsubscribe past the command timeout)
//! fails that request alone: the connection and every other waiter stay.
//! A notice tells the task when it is dropped, and a channel nobody waits
//! on any more is unsubscribed at once, so idle channels cost nothing. The
//! task ends when its cache and every notice are dropped.
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

struct Subscribe {
    channel: String,
    notice: oneshot::Sender<Option<u64>>,
    done: oneshot::Sender<Result<(), StorageError>>,
}

enum Command {
    Subscribe(Subscribe),
    /// A notice of this channel was dropped or resolved.
    Dropped(String),
}

/// What a notice holds while it waits: on drop (resolved or abandoned) it
/// tells the hub, after letting go of its receiver, so the hub sees it
/// closed.
struct Listening {
    heard: Option<oneshot::Receiver<Option<u64>>>,
    channel: Option<String>,
    hub: mpsc::UnboundedSender<Command>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        drop(self.heard.take());
        if let Some(channel) = self.channel.take() {
            let _ = self.hub.send(Command::Dropped(channel));
        }
    }
}

/// The handle of a hub task.
#[derive(Clone)]
pub(crate) struct Hub {
    commands: mpsc::UnboundedSender<Command>,
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

    /// Whether the task is gone (its runtime shut down): a new one must be
    /// spawned.
    pub(crate) fn is_closed(&self) -> bool {
        self.commands.is_closed()
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
        let listening = Listening {
            heard: Some(heard),
            channel: Some(request.channel.clone()),
            hub: self.commands.clone(),
        };
        if self.commands.send(Command::Subscribe(request)).is_err() {
            return Err(StorageError::unavailable(OP, "notification task ended"));
        }
        match tokio::time::timeout(timeout, confirmed).await {
            Ok(Ok(Ok(()))) => Ok(RefreshNotice::new(async move {
                let mut listening = listening;
                match listening.heard.as_mut() {
                    Some(heard) => heard.await.ok().flatten(),
                    None => None,
                }
            })),
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
    commands: mpsc::UnboundedReceiver<Command>,
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
                    // On a cluster, try another node: this one may be the
                    // frozen or partitioned one.
                    node += 1;
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
                    command = self.commands.recv() => match command {
                        None => return,
                        Some(Command::Subscribe(request)) => {
                            let down = StorageError::unavailable(
                                "redis_subscribe_refreshed",
                                "notification connection is down",
                            );
                            let _ = request.done.send(Err(down));
                        }
                        Some(Command::Dropped(_)) => {}
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
    /// (`true`) or the cache and its notices are gone (`false`).
    async fn serve(&mut self, mut sink: PubSubSink, mut stream: PubSubStream) -> bool {
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    None => return false,
                    Some(Command::Subscribe(request)) => {
                        if !self.waiters.contains_key(&request.channel) {
                            let call = sink.subscribe(&request.channel);
                            let answer = tokio::time::timeout(self.command_timeout, call).await;
                            match self.settle("redis_subscribe_refreshed", answer, &mut sink).await {
                                Ok(()) => {}
                                Err((error, connection_lost)) => {
                                    warn!(kind = %error.kind(), "could not subscribe to refresh notifications");
                                    let _ = request.done.send(Err(error));
                                    if connection_lost {
                                        return true;
                                    }
                                    continue;
                                }
                            }
                        }
                        self.waiters.entry(request.channel).or_default().push(request.notice);
                        let _ = request.done.send(Ok(()));
                    }
                    Some(Command::Dropped(channel)) => {
                        let idle = self.waiters.get_mut(&channel).is_some_and(|waiters| {
                            waiters.retain(|w| !w.is_closed());
                            waiters.is_empty()
                        });
                        if idle {
                            self.waiters.remove(&channel);
                            if !self.unsubscribe(&mut sink, &channel).await {
                                return true;
                            }
                        }
                    }
                },
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
                    if !self.unsubscribe(&mut sink, &channel).await {
                        return true;
                    }
                }
            }
        }
    }

    /// Unsubscribes `channel`; `false` when the connection is lost (a slow
    /// answer is not: the channel then stays subscribed, which only costs a
    /// message nobody waits for).
    async fn unsubscribe(&self, sink: &mut PubSubSink, channel: &str) -> bool {
        let call = sink.unsubscribe(channel);
        let answer = tokio::time::timeout(self.command_timeout, call).await;
        match self
            .settle("redis_unsubscribe_refreshed", answer, sink)
            .await
        {
            Ok(()) => true,
            Err((_, connection_lost)) => !connection_lost,
        }
    }

    /// The outcome of a command that ran within the command timeout; on
    /// failure the error and whether the connection is gone. A timeout
    /// alone does not say so: the connection is lost only when it then
    /// fails a `PING` within one connect plus one command (a slow server
    /// answers; a frozen or partitioned node does not, and the hub moves
    /// to the next node).
    async fn settle(
        &self,
        operation: &'static str,
        answer: Result<redis::RedisResult<()>, tokio::time::error::Elapsed>,
        sink: &mut PubSubSink,
    ) -> Result<(), (StorageError, bool)> {
        match answer {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                let lost = error.is_io_error()
                    || error.is_connection_dropped()
                    || error.is_unrecoverable_error();
                Err((storage_error(operation, &error), lost))
            }
            Err(_) => {
                let bound = self.connect_timeout + self.command_timeout;
                let ping = tokio::time::timeout(bound, sink.ping::<redis::Value>()).await;
                Err((timed_out(operation), !matches!(ping, Ok(Ok(_)))))
            }
        }
    }
}
