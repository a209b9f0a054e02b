//! The bridge's settings: every limit with its default and what it costs, validated once.

use std::fmt;
use std::time::Duration;

use super::backoff::BackoffPolicy;

/// Settings of the Redis bridge. `Default` gives small, documented values; [`BrokerConfig::validate`] checks them
/// (the bridge calls it on start). The bridge needs the `redis` cargo feature (on by default); without it the type
/// exists but never validates.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// `redis://HOST:PORT[/DB]` (what the `redis` crate parses; TLS is not built in). No default: the bridge runs
    /// only when a URL is given.
    pub url: String,
    /// This node's origin id, written into every envelope so its own publishes coming back are recognised.
    /// `None` (default): random per process (64 bits from the OS), so a restarted node is a new publisher.
    pub node_id: Option<u64>,
    /// Prefix of every Redis channel: topic `room` is channel `ringws:room` (default `"ringws:"`). Nodes that should
    /// share topics use the same prefix; different applications on one Redis use different ones.
    pub channel_prefix: String,
    /// Publishes waiting for the bridge thread (default 4096). One entry is a topic pointer and a shared payload
    /// (~48 B + the payload, which the frame already holds). Full: the publish is dropped and counted.
    pub publish_queue: usize,
    /// Messages received from Redis waiting to be delivered (default 4096). Full: dropped and counted.
    pub inbound_queue: usize,
    /// How long a channel stays subscribed after its last local subscriber left (default 2 s), so clients that
    /// leave and rejoin do not churn Redis with UNSUBSCRIBE/SUBSCRIBE. Remote messages in that window are
    /// delivered to nobody.
    pub linger: Duration,
    /// Channels per SUBSCRIBE/UNSUBSCRIBE command, also when re-subscribing the whole wanted set (default 256).
    pub subscribe_batch: usize,
    /// Publishes per pipeline to Redis (default 256).
    pub publish_batch: usize,
    /// Reconnect delays: exponential from `base` to `max`, with jitter (default 100 ms to 5 s).
    pub backoff: BackoffPolicy,
    /// Timeout of one TCP connect + handshake (default 2 s).
    pub connect_timeout: Duration,
    /// Timeout of one command or pipeline (default 2 s); on expiry the session is dropped and rebuilt.
    pub op_timeout: Duration,
    /// How often the bridge publishes a probe to its own probe channel (default 5 s).
    pub probe_interval: Duration,
    /// How long the probe may take to come back on the subscriber connection (default 3 s); otherwise the
    /// connection is treated as deaf and rebuilt.
    pub probe_timeout: Duration,
    /// Largest payload accepted from Redis (default 16 MiB, the server's `max_message_size`); larger ones are
    /// dropped and counted.
    pub max_payload: usize,
    /// Topics this node keeps a publish sequence for (default 65,536, ~64 B each). Past it the table is cleared and
    /// the node starts a new epoch, which receivers take as a fresh publisher (no false losses).
    pub max_publish_topics: usize,
    /// (topic, publisher) streams whose order a receiver tracks (default 65,536, ~64 B each). Past it the table is
    /// cleared: the next message of each stream is taken as its first (no loss or duplicate detection across it).
    pub max_tracked_streams: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: String::new(),
            node_id: None,
            channel_prefix: "ringws:".to_string(),
            publish_queue: 4096,
            inbound_queue: 4096,
            linger: Duration::from_secs(2),
            subscribe_batch: 256,
            publish_batch: 256,
            backoff: BackoffPolicy::default(),
            connect_timeout: Duration::from_secs(2),
            op_timeout: Duration::from_secs(2),
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            max_payload: 16 << 20,
            max_publish_topics: 65_536,
            max_tracked_streams: 65_536,
        }
    }
}

impl BrokerConfig {
    /// The defaults with this URL.
    pub fn new(url: impl Into<String>) -> Self {
        BrokerConfig {
            url: url.into(),
            ..Default::default()
        }
    }

    /// Check every field; the URL must parse as a Redis URL. In a build without the `redis` cargo feature every
    /// configuration is refused ([`BrokerConfigError::NotBuilt`]).
    pub fn validate(&self) -> Result<(), BrokerConfigError> {
        #[cfg(not(feature = "redis"))]
        return Err(BrokerConfigError::NotBuilt);
        #[cfg(feature = "redis")]
        {
            use redis::IntoConnectionInfo;
            if let Err(e) = self.url.as_str().into_connection_info() {
                return Err(BrokerConfigError::Url(e.to_string()));
            }
            self.validate_limits()
        }
    }

    #[cfg(feature = "redis")]
    fn validate_limits(&self) -> Result<(), BrokerConfigError> {
        let positive = [
            ("publish_queue", self.publish_queue),
            ("inbound_queue", self.inbound_queue),
            ("subscribe_batch", self.subscribe_batch),
            ("publish_batch", self.publish_batch),
            ("max_payload", self.max_payload),
            ("max_publish_topics", self.max_publish_topics),
            ("max_tracked_streams", self.max_tracked_streams),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(BrokerConfigError::Zero(name));
            }
        }
        let durations = [
            ("connect_timeout", self.connect_timeout),
            ("op_timeout", self.op_timeout),
            ("probe_interval", self.probe_interval),
            ("probe_timeout", self.probe_timeout),
            ("backoff.base", self.backoff.base),
        ];
        for (name, d) in durations {
            if d.is_zero() {
                return Err(BrokerConfigError::Zero(name));
            }
        }
        if self.backoff.max < self.backoff.base {
            return Err(BrokerConfigError::Backoff);
        }
        if self.channel_prefix.is_empty() {
            return Err(BrokerConfigError::Zero("channel_prefix"));
        }
        Ok(())
    }
}

/// Why a [`BrokerConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerConfigError {
    /// The URL does not parse (the text says why).
    Url(String),
    /// This field must not be zero or empty.
    Zero(&'static str),
    /// `backoff.max` is below `backoff.base`.
    Backoff,
    /// This build has no Redis bridge: the `redis` cargo feature (on by default) was turned off.
    NotBuilt,
}

impl fmt::Display for BrokerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerConfigError::Url(e) => {
                write!(f, "redis URL: {e} (expected redis://HOST:PORT[/DB])")
            }
            BrokerConfigError::Zero(name) => write!(f, "broker {name} must not be zero or empty"),
            BrokerConfigError::Backoff => {
                write!(f, "broker backoff.max must be at least backoff.base")
            }
            BrokerConfigError::NotBuilt => write!(
                f,
                "this build has no Redis support: build ringws with its `redis` cargo feature (on by default)"
            ),
        }
    }
}

impl std::error::Error for BrokerConfigError {}

#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_with_a_url() {
        assert!(BrokerConfig::new("redis://127.0.0.1:6379/0")
            .validate()
            .is_ok());
        assert!(BrokerConfig::new("redis://localhost").validate().is_ok());
    }

    #[test]
    fn bad_urls_and_zero_limits_are_refused() {
        assert!(matches!(
            BrokerConfig::new("http://x").validate(),
            Err(BrokerConfigError::Url(_))
        ));
        assert!(matches!(
            BrokerConfig::new("").validate(),
            Err(BrokerConfigError::Url(_))
        ));
        let mut c = BrokerConfig::new("redis://127.0.0.1");
        c.publish_queue = 0;
        assert_eq!(c.validate(), Err(BrokerConfigError::Zero("publish_queue")));
        let mut c = BrokerConfig::new("redis://127.0.0.1");
        c.probe_timeout = Duration::ZERO;
        assert_eq!(c.validate(), Err(BrokerConfigError::Zero("probe_timeout")));
        let mut c = BrokerConfig::new("redis://127.0.0.1");
        c.backoff.max = Duration::from_millis(1);
        assert_eq!(c.validate(), Err(BrokerConfigError::Backoff));
    }
}

#[cfg(all(test, not(feature = "redis")))]
mod tests_without_redis {
    use super::*;

    #[test]
    fn every_config_is_refused_without_the_feature() {
        let e = BrokerConfig::new("redis://127.0.0.1:6379").validate();
        assert_eq!(e, Err(BrokerConfigError::NotBuilt));
        assert!(e.unwrap_err().to_string().contains("`redis` cargo feature"));
    }
}
