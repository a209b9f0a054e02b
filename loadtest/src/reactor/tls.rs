//! The seam between the reactor and the client TLS layer (`crate::tls`) for wss:// connections. Three hooks, no
//! io_uring here: a session is created when the TCP connect completes ([`Reactor::tls_start`]), everything a
//! connection sends goes through [`Reactor::tls_seal`] just before its send is submitted, and received ciphertext
//! becomes plaintext in [`Reactor::tls_received`] (own buffer) / [`Reactor::tls_feed`] (provided buffer) before the
//! WebSocket code sees it. A TLS failure during the opening counts as `tls` and ends the connection.

use super::conn::St;
use super::state::Reactor;
use crate::stats::ErrKind;

impl Reactor {
    /// The TCP connect of connection `i` completed: give it a TLS session if the run is wss://. False if that
    /// failed (the connection is gone).
    pub(super) fn tls_start(&mut self, i: usize) -> bool {
        let Some(setup) = &self.ctx.plan.tls else {
            return true;
        };
        match setup.client() {
            Ok(t) => {
                self.conns[i].tls = Some(Box::new(t));
                true
            }
            Err(_) => {
                self.connect_failed(i, ErrKind::Tls);
                false
            }
        }
    }

    /// Replace the plaintext in the connection's send buffer by the ciphertext to send (no-op for ws://).
    pub(super) fn tls_seal(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if let Some(t) = c.tls.as_mut() {
            t.seal(&mut c.sbuf);
        }
    }

    /// The TLS layer has records of its own to send (handshake, alert) while the WebSocket side has nothing.
    pub(super) fn tls_wants_write(&self, i: usize) -> bool {
        self.conns[i].tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// `n` bytes of ciphertext arrived at the end of the connection's own buffer (`rbuf[rlen..rlen + n]`): replace
    /// them by the plaintext they carried (growing the buffer if needed) and count it into `rlen`. False if the
    /// connection failed.
    pub(super) fn tls_received(&mut self, i: usize, n: usize) -> bool {
        let c = &mut self.conns[i];
        let Some(t) = c.tls.as_mut() else {
            c.rlen += n as u32;
            return true;
        };
        let mut plain = std::mem::take(&mut self.ctx.tls_plain);
        plain.clear();
        let off = c.rlen as usize;
        let res = t.receive(&c.rbuf[off..off + n], &mut plain);
        if res.is_ok() {
            if off + plain.len() > c.rbuf.len() {
                let mut b = vec![0u8; (off + plain.len()).next_power_of_two()].into_boxed_slice();
                b[..off].copy_from_slice(&c.rbuf[..off]);
                c.rbuf = b;
            }
            c.rbuf[off..off + plain.len()].copy_from_slice(&plain);
            c.rlen += plain.len() as u32;
        }
        self.ctx.tls_plain = plain;
        self.tls_after_receive(i, res.is_ok())
    }

    /// Ciphertext arrived in a provided buffer: decrypt it and feed the plaintext to the WebSocket side.
    pub(super) fn tls_feed(&mut self, i: usize, data: &mut [u8], now: u64) {
        let c = &mut self.conns[i];
        let Some(t) = c.tls.as_mut() else {
            self.feed(i, data, now);
            return;
        };
        let mut plain = std::mem::take(&mut self.ctx.tls_plain);
        plain.clear();
        let ok = t.receive(data, &mut plain).is_ok();
        if ok && !plain.is_empty() {
            self.feed(i, &mut plain, now);
        }
        self.ctx.tls_plain = plain;
        self.tls_after_receive(i, ok);
    }

    /// After a receive: on failure end the connection (counted), otherwise flush what the TLS layer wants to send.
    fn tls_after_receive(&mut self, i: usize, ok: bool) -> bool {
        if !ok {
            match self.conns[i].st {
                St::Connecting | St::Handshaking => self.connect_failed(i, ErrKind::Tls),
                _ => {
                    self.ctx.stats.err(ErrKind::Tls);
                    self.kill(i);
                }
            }
            return false;
        }
        if self.tls_wants_write(i) {
            self.mark_dirty(i);
        }
        true
    }
}
