//! The bridge thread: a current-thread tokio runtime that owns two RESP3 connections to Redis (one subscribed,
//! whose pushes land in a bounded queue; one for PUBLISH pipelines and probes) and the loop that reconnects them.
//!
//! One session, one `select!` loop: local publishes (batched into one pipeline), messages from Redis (delivered
//! through the [`Sink`]), want changes and linger ends (SUBSCRIBE/UNSUBSCRIBE in batches), and the liveness
//! probe. Any error, timeout or unanswered probe ends the session; the outer loop waits with backoff and builds a
//! new one, re-subscribing the whole wanted set. Nothing here ever blocks a worker: workers only touch the bounded
//! publish queue, the interest mutex (on topic creation and removal) and a `Notify`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, PushInfo, PushKind, Value};
use tokio::sync::mpsc::{self, error::TrySendError};

use super::backoff::{Backoff, Jitter};
use super::envelope::{self, Header, Kind, HEADER_LEN};
use super::seq::{SeqSource, SeqTracker, Verdict};
use super::shared::{Outgoing, Shared};
use super::stats::{add, bump};
use super::{Health, Sink};

/// Why a session ended.
enum End {
    Stop,
    Failed(String),
}

/// State that outlives sessions: sequence numbers out and in, scratch space.
struct Node {
    shared: Arc<Shared>,
    sink: Arc<dyn Sink>,
    rx: mpsc::Receiver<Outgoing>,
    seq: SeqSource,
    tracker: SeqTracker,
    scratch: Vec<u8>,
    probe_token: u64,
    probe_channel: String,
}

/// The thread's body: connect, run a session, back off, repeat, until the bridge is shut down.
pub(crate) async fn run(
    shared: Arc<Shared>,
    sink: Arc<dyn Sink>,
    rx: mpsc::Receiver<Outgoing>,
    client: Client,
) {
    let cfg = shared.config.clone();
    let mut node = Node {
        probe_channel: format!("{}~probe~{:016x}", cfg.channel_prefix, shared.node_id),
        seq: SeqSource::new(cfg.max_publish_topics),
        tracker: SeqTracker::new(cfg.max_tracked_streams),
        scratch: Vec::new(),
        probe_token: 0,
        shared,
        sink,
        rx,
    };
    let mut backoff = Backoff::new(cfg.backoff);
    let mut jitter = Jitter::from_os();
    let mut was_up = false;
    loop {
        if node.stopping() {
            return;
        }
        match node.connect(&client).await {
            Some(Ok(session)) => {
                bump(&node.shared.stats.sessions);
                let resubscribe = was_up;
                was_up = true;
                let end = session.run(&mut node, resubscribe, &mut backoff).await;
                match end {
                    End::Stop => return,
                    End::Failed(why) => {
                        bump(&node.shared.stats.session_failures);
                        tracing::warn!(%why, "broker session lost; reconnecting");
                    }
                }
            }
            Some(Err(e)) => {
                bump(&node.shared.stats.connect_failures);
                if backoff.attempts() == 0 {
                    tracing::warn!(error = %e, "broker unreachable; serving locally and retrying");
                } else {
                    tracing::debug!(error = %e, "broker connect failed");
                }
            }
            None => return,
        }
        node.set_down();
        let delay = backoff.next_delay(jitter.next_u64());
        if !node.wait_down(delay).await {
            return;
        }
    }
}

impl Node {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    fn set_down(&mut self) {
        let s = &self.shared;
        s.set_health(Health::Down);
        s.stats.connected.store(0, Ordering::Relaxed);
        s.stats.channels.store(0, Ordering::Relaxed);
        s.lock_interest().on_disconnect();
    }

    /// Sleep out a backoff delay while Redis is away: local publishes are dropped and counted. False: stop.
    async fn wait_down(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return true,
                _ = self.shared.wake.notified() => {
                    if self.stopping() {
                        return false;
                    }
                }
                m = self.rx.recv() => match m {
                    Some(_) => bump(&self.shared.stats.drop_disconnected),
                    None => return false,
                },
            }
        }
    }

    /// Open both connections (bounded by the connect timeout). None: stop was asked meanwhile.
    async fn connect(&mut self, client: &Client) -> Option<redis::RedisResult<Session>> {
        let cfg = &self.shared.config;
        let (push_tx, push_rx) = mpsc::channel::<PushInfo>(cfg.inbound_queue);
        let dead = Arc::new(AtomicBool::new(false));
        let sender = {
            let dead = dead.clone();
            let shared = self.shared.clone();
            move |info: PushInfo| -> Result<(), ()> {
                match info.kind {
                    PushKind::Message => match push_tx.try_send(info) {
                        Ok(()) => Ok(()),
                        Err(TrySendError::Full(_)) => {
                            bump(&shared.stats.drop_inbound_full);
                            Ok(())
                        }
                        Err(TrySendError::Closed(_)) => Err(()),
                    },
                    PushKind::Disconnection => {
                        dead.store(true, Ordering::Release);
                        shared.wake.notify_one();
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
        };
        let base = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_response_timeout(Some(cfg.op_timeout));
        let sub_cfg = base.clone().set_push_sender(sender);
        let limit = cfg.connect_timeout * 2 + cfg.op_timeout;
        let fut = async {
            let sub = client
                .get_multiplexed_async_connection_with_config(&sub_cfg)
                .await?;
            let publ = client
                .get_multiplexed_async_connection_with_config(&base)
                .await?;
            Ok::<_, redis::RedisError>((sub, publ))
        };
        tokio::pin!(fut);
        let timeout = tokio::time::sleep(limit);
        tokio::pin!(timeout);
        loop {
            tokio::select! {
                r = &mut fut => {
                    return Some(r.map(|(sub, publ)| Session {
                        sub,
                        publ,
                        push_rx,
                        dead,
                        listening: HashSet::new(),
                    }));
                }
                _ = &mut timeout => {
                    return Some(Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "connect timed out",
                    ))));
                }
                _ = self.shared.wake.notified() => {
                    if self.stopping() {
                        return None;
                    }
                }
                // Publishes made while connecting cannot be sent yet.
                m = self.rx.recv() => match m {
                    Some(_) => bump(&self.shared.stats.drop_disconnected),
                    None => return None,
                },
            }
        }
    }
}

struct Session {
    sub: MultiplexedConnection,
    publ: MultiplexedConnection,
    push_rx: mpsc::Receiver<PushInfo>,
    dead: Arc<AtomicBool>,
    /// Topic channels subscribed on this session (what the bridge thread delivers from).
    listening: HashSet<Arc<str>>,
}

/// The liveness probe: one outstanding at a time.
struct Probe {
    next_at: Instant,
    outstanding: Option<(u64, Instant)>,
}

async fn timed<T>(
    limit: Duration,
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

impl Session {
    async fn run(mut self, node: &mut Node, resubscribe: bool, backoff: &mut Backoff) -> End {
        let cfg = node.shared.config.clone();
        // The probe channel first, then the whole wanted set, in batches.
        if let Err(e) = timed(cfg.op_timeout, self.sub.subscribe(&node.probe_channel)).await {
            return End::Failed(format!("subscribing the probe channel: {e}"));
        }
        let all = node.shared.lock_interest().on_connect();
        if let Err(e) = self.subscribe(node, &all).await {
            return End::Failed(e);
        }
        if resubscribe {
            add(&node.shared.stats.resubscribed, all.len() as u64);
        } else {
            add(&node.shared.stats.subscribes, all.len() as u64);
        }
        let listening = &self.listening;
        node.tracker.retain(|t| listening.contains(t));
        node.shared
            .stats
            .channels
            .store(all.len() as u64, Ordering::Relaxed);
        node.shared.stats.connected.store(1, Ordering::Relaxed);
        node.shared.set_health(Health::Up);
        tracing::info!(channels = all.len(), "broker connected");

        let mut probe = Probe {
            next_at: Instant::now() + cfg.probe_interval,
            outstanding: None,
        };
        let mut batch: Vec<Outgoing> = Vec::with_capacity(cfg.publish_batch);
        let mut pushes: Vec<PushInfo> = Vec::with_capacity(256);
        loop {
            let interest_at = node.shared.lock_interest().next_deadline();
            let probe_at = match probe.outstanding {
                Some((_, sent)) => sent + cfg.probe_timeout,
                None => probe.next_at,
            };
            let timer_at = interest_at.map_or(probe_at, |t| t.min(probe_at));
            tokio::select! {
                _ = node.shared.wake.notified() => {
                    if node.stopping() {
                        return End::Stop;
                    }
                    if self.dead.load(Ordering::Acquire) {
                        return End::Failed("connection closed".into());
                    }
                    if let Err(e) = self.sync_interest(node).await {
                        return End::Failed(e);
                    }
                }
                n = self.push_rx.recv_many(&mut pushes, 256) => {
                    if n == 0 {
                        return End::Failed("subscriber connection closed".into());
                    }
                    for p in pushes.drain(..) {
                        self.on_push(node, p, &mut probe, backoff);
                    }
                }
                n = node.rx.recv_many(&mut batch, cfg.publish_batch) => {
                    if n == 0 {
                        return End::Stop;
                    }
                    if let Err(e) = self.publish(node, &mut batch).await {
                        return End::Failed(e);
                    }
                }
                _ = tokio::time::sleep_until(timer_at.into()) => {
                    if let Err(e) = self.sync_interest(node).await {
                        return End::Failed(e);
                    }
                    if let Err(e) = self.probe(node, &mut probe).await {
                        bump(&node.shared.stats.probe_failures);
                        return End::Failed(e);
                    }
                }
            }
        }
    }

    fn channel(prefix: &str, topic: &str) -> String {
        let mut c = String::with_capacity(prefix.len() + topic.len());
        c.push_str(prefix);
        c.push_str(topic);
        c
    }

    async fn subscribe(&mut self, node: &Node, topics: &[Arc<str>]) -> Result<(), String> {
        let cfg = &node.shared.config;
        for chunk in topics.chunks(cfg.subscribe_batch) {
            let chans: Vec<String> = chunk
                .iter()
                .map(|t| Self::channel(&cfg.channel_prefix, t))
                .collect();
            timed(cfg.op_timeout, self.sub.subscribe(&chans))
                .await
                .map_err(|e| format!("SUBSCRIBE: {e}"))?;
            self.listening.extend(chunk.iter().cloned());
        }
        Ok(())
    }

    /// Apply want changes and ended lingers.
    async fn sync_interest(&mut self, node: &mut Node) -> Result<(), String> {
        let (actions, subscribed) = {
            let mut i = node.shared.lock_interest();
            let a = i.poll(Instant::now());
            (a, i.subscribed())
        };
        if actions.is_empty() {
            return Ok(());
        }
        self.subscribe(node, &actions.subscribe).await?;
        add(
            &node.shared.stats.subscribes,
            actions.subscribe.len() as u64,
        );
        let cfg = &node.shared.config;
        for chunk in actions.unsubscribe.chunks(cfg.subscribe_batch) {
            let chans: Vec<String> = chunk
                .iter()
                .map(|t| Self::channel(&cfg.channel_prefix, t))
                .collect();
            timed(cfg.op_timeout, self.sub.unsubscribe(&chans))
                .await
                .map_err(|e| format!("UNSUBSCRIBE: {e}"))?;
            for t in chunk {
                self.listening.remove(t);
                node.tracker.forget(t);
            }
        }
        add(
            &node.shared.stats.unsubscribes,
            actions.unsubscribe.len() as u64,
        );
        node.shared
            .stats
            .channels
            .store(subscribed as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Send a batch of local publishes as one pipeline. On failure the whole batch is counted dropped.
    async fn publish(&mut self, node: &mut Node, batch: &mut Vec<Outgoing>) -> Result<(), String> {
        let n = batch.len() as u64;
        let mut pipe = redis::pipe();
        let prefix = &node.shared.config.channel_prefix;
        for o in batch.drain(..) {
            let (epoch, seq) = node.seq.next(&o.topic);
            let h = Header {
                kind: Kind::Data,
                is_text: o.is_text,
                origin: node.shared.node_id,
                epoch,
                seq,
            };
            node.scratch.clear();
            envelope::encode(&h, &o.payload, &mut node.scratch);
            pipe.cmd("PUBLISH")
                .arg(Self::channel(prefix, &o.topic))
                .arg(&node.scratch[..])
                .ignore();
        }
        match timed(
            node.shared.config.op_timeout,
            pipe.query_async::<()>(&mut self.publ),
        )
        .await
        {
            Ok(()) => {
                add(&node.shared.stats.published, n);
                Ok(())
            }
            Err(e) => {
                add(&node.shared.stats.drop_publish_failed, n);
                Err(format!("PUBLISH: {e}"))
            }
        }
    }

    /// Send the next probe when due; fail when the outstanding one is late.
    async fn probe(&mut self, node: &mut Node, probe: &mut Probe) -> Result<(), String> {
        let cfg = &node.shared.config;
        let now = Instant::now();
        if let Some((_, sent)) = probe.outstanding {
            if now >= sent + cfg.probe_timeout {
                return Err(format!(
                    "probe not echoed within {:?}: subscriber deaf",
                    cfg.probe_timeout
                ));
            }
            return Ok(());
        }
        if now < probe.next_at {
            return Ok(());
        }
        node.probe_token += 1;
        let h = Header {
            kind: Kind::Probe,
            is_text: false,
            origin: node.shared.node_id,
            epoch: 0,
            seq: node.probe_token,
        };
        node.scratch.clear();
        envelope::encode(&h, &[], &mut node.scratch);
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&node.probe_channel).arg(&node.scratch[..]);
        let receivers: i64 = timed(cfg.op_timeout, cmd.query_async(&mut self.publ))
            .await
            .map_err(|e| format!("probe PUBLISH: {e}"))?;
        bump(&node.shared.stats.probes_sent);
        if receivers < 1 {
            return Err("probe channel has no subscriber: subscription lost".into());
        }
        probe.outstanding = Some((node.probe_token, now));
        Ok(())
    }

    fn on_push(
        &mut self,
        node: &mut Node,
        push: PushInfo,
        probe: &mut Probe,
        backoff: &mut Backoff,
    ) {
        let stats = &node.shared.stats;
        let cfg = &node.shared.config;
        let mut data = push.data.into_iter();
        let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
            (data.next(), data.next())
        else {
            bump(&stats.drop_malformed);
            return;
        };
        if payload.len() > HEADER_LEN + cfg.max_payload {
            bump(&stats.drop_oversize);
            return;
        }
        let h = match envelope::decode(&payload) {
            Ok((h, _)) => h,
            Err(_) => {
                bump(&stats.drop_malformed);
                return;
            }
        };
        if h.kind == Kind::Probe {
            if h.origin == node.shared.node_id {
                if let Some((token, sent)) = probe.outstanding {
                    if token == h.seq {
                        let rtt = sent.elapsed().as_micros().min(u64::MAX as u128) as u64;
                        stats.probe_rtt_us.store(rtt, Ordering::Relaxed);
                        probe.outstanding = None;
                        probe.next_at = Instant::now() + cfg.probe_interval;
                        // The session works end to end: the next failure retries from the shortest delay.
                        backoff.reset();
                    }
                }
            }
            return;
        }
        if h.origin == node.shared.node_id {
            bump(&stats.own_echoes);
            return;
        }
        let topic = match channel
            .strip_prefix(cfg.channel_prefix.as_bytes())
            .map(std::str::from_utf8)
        {
            Some(Ok(t)) => t,
            _ => {
                bump(&stats.drop_malformed);
                return;
            }
        };
        if !self.listening.contains(topic) {
            // In flight while we unsubscribed: nobody here wants it.
            return;
        }
        bump(&stats.received);
        match node.tracker.observe(topic, h.origin, h.epoch, h.seq) {
            Verdict::Deliver { lost } => {
                add(&stats.lost, lost);
                bump(&stats.delivered);
                let body = Bytes::from(payload).slice(HEADER_LEN..);
                let full = node.sink.deliver(topic, body, h.is_text);
                add(&stats.drop_local_full, full as u64);
            }
            Verdict::Repeat => bump(&stats.drop_repeat),
        }
    }
}
