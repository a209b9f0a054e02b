//! A build without the `redis` feature: the server's bridge slot has this type, which has no values. The server
//! never needs one: `Config::validate` refuses a `broker` (see [`super::BrokerConfig::validate`]), so `start`
//! only exists to keep the server's code the same in both builds.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;

use super::{BrokerConfig, BrokerConfigError, BrokerError, BrokerSnapshot, Health, Sink};

/// No bridge in this build.
pub(crate) struct Bridge(Infallible);

impl Bridge {
    pub(crate) fn start(
        _config: BrokerConfig,
        _sink: Arc<dyn Sink>,
    ) -> Result<Bridge, BrokerError> {
        Err(BrokerError::Config(BrokerConfigError::NotBuilt))
    }
    pub(crate) fn want(&self, _topic: &str) {
        match self.0 {}
    }
    pub(crate) fn unwant(&self, _topic: &str) {
        match self.0 {}
    }
    pub(crate) fn publish(&self, _topic: Arc<str>, _payload: Bytes, _is_text: bool) -> bool {
        match self.0 {}
    }
    pub(crate) fn health(&self) -> Health {
        match self.0 {}
    }
    pub(crate) fn stats(&self) -> BrokerSnapshot {
        match self.0 {}
    }
    pub(crate) fn node_id(&self) -> u64 {
        match self.0 {}
    }
}
