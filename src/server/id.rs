//! Connection identity: an opaque id, unique in the process while the connection lives.

use std::fmt;

/// Generation bits kept per slot occupant (a completion for a previous occupant of a slot is recognised by them).
pub(crate) const GEN_MASK: u32 = 0xff_ffff;

/// A connection's id: unique among the live connections of a server, stable for the connection's lifetime.
/// Its value carries no meaning for applications; print it with `Display` (e.g. in logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    /// Layout (private): worker (8 bits) | generation (24 bits) | slab slot (32 bits).
    #[inline]
    pub(crate) fn new(worker: usize, slot: u32, gen: u32) -> ConnId {
        ConnId(((worker as u64) << 56) | (((gen & GEN_MASK) as u64) << 32) | slot as u64)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_by_worker_slot_and_generation() {
        let a = ConnId::new(0, 1, 1);
        assert_ne!(a, ConnId::new(1, 1, 1));
        assert_ne!(a, ConnId::new(0, 2, 1));
        assert_ne!(a, ConnId::new(0, 1, 2));
        assert_eq!(a, ConnId::new(0, 1, 1 + (GEN_MASK + 1)));
        assert_eq!(ConnId::new(1, 2, 3).to_string(), "100000300000002");
    }
}
