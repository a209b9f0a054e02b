//! The input path of [`Connection`]: frame headers (resumable across reads), unmasking, message assembly, UTF-8
//! validation, decompression of RSV1 messages and control frames. The state it works on, the public API and the
//! output side (queued control frames, failing the connection) live in the parent module.

use super::{
    is_valid_close_code, Connection, Event, ProtocolError, C_QUEUED, C_RECEIVED, E_CLOSE_CODE,
    E_CLOSE_LEN1, E_CLOSE_UTF8, E_CONT_NO_START, E_CTRL_FRAGMENTED, E_CTRL_TOO_LONG,
    E_DATA_IN_FRAGMENTED, E_FRAME_TOO_BIG, E_MASKED, E_MESSAGE_TOO_BIG, E_OPCODE, E_RSV,
    E_UNMASKED, E_UTF8, F_ALLOW_RSV1, F_CLIENT, F_FIN, F_IN_PAYLOAD, F_MSG_RSV1, F_NO_AUTO_PONG,
    KEEP_CAPACITY, MAX_RESERVE,
};
use crate::mask::apply_mask;
use crate::proto::compression::Decompressor;
use crate::proto::frame::{self, FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};

impl Connection {
    #[inline]
    pub(super) fn read_frames(
        &mut self,
        input: &mut [u8],
        dec: &mut Option<&mut dyn Decompressor>,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), ProtocolError> {
        let mut pos = 0usize;
        loop {
            if self.flags & F_IN_PAYLOAD == 0 {
                // ---- header ----
                let header = if self.spill_len == 0 {
                    let rest = &input[pos..];
                    if rest.len() < 2 {
                        if let Some(&b) = rest.first() {
                            self.spill[0] = b;
                            self.spill_len = 1;
                        }
                        return Ok(());
                    }
                    self.check_start(rest[0], rest[1])?;
                    let need = frame::header_len(rest[1]);
                    if rest.len() < need {
                        self.spill[..rest.len()].copy_from_slice(rest);
                        self.spill_len = rest.len() as u8;
                        return Ok(());
                    }
                    let h = frame::decode_complete_header(&rest[..need])?;
                    pos += need;
                    h
                } else {
                    match self.fill_spill(input, &mut pos)? {
                        Some(h) => h,
                        None => return Ok(()),
                    }
                };
                self.begin_frame(&header)?;
                let len = self.remaining;
                if len <= (input.len() - pos) as u64 {
                    // Fast path: the whole payload is in `input`; unmask in place and use it without a copy.
                    let len = len as usize;
                    let payload = &mut input[pos..pos + len];
                    pos += len;
                    self.remaining = 0;
                    if let Some(key) = header.mask {
                        apply_mask(key, 0, payload);
                    }
                    self.whole_frame(payload, dec, on_event)?;
                    if self.close & C_RECEIVED != 0 {
                        return Ok(());
                    }
                    continue;
                }
                self.flags |= F_IN_PAYLOAD;
            }
            // ---- a payload arriving in pieces ----
            let avail = input.len() - pos;
            if avail == 0 {
                return Ok(());
            }
            let n = self.remaining.min(avail as u64) as usize;
            let chunk = &mut input[pos..pos + n];
            pos += n;
            if self.flags & F_CLIENT == 0 {
                apply_mask(self.key, self.phase as usize, chunk);
                self.phase = ((self.phase as usize + n) & 3) as u8;
            }
            self.remaining -= n as u64;
            let done = self.remaining == 0;
            if done {
                self.flags &= !F_IN_PAYLOAD;
            }
            if self.op & 0x8 != 0 {
                self.buf.extend_from_slice(chunk);
                if done {
                    let len = self.ctrl_len as usize;
                    let start = self.buf.len() - len;
                    let mut tmp = [0u8; MAX_CONTROL_PAYLOAD];
                    tmp[..len].copy_from_slice(&self.buf[start..]);
                    self.buf.truncate(start);
                    self.control_frame(&tmp[..len], on_event)?;
                    if self.close & C_RECEIVED != 0 {
                        return Ok(());
                    }
                }
            } else {
                let last = done && self.flags & F_FIN != 0;
                self.append_data(chunk, last)?;
                if last {
                    self.finish_message(dec, on_event)?;
                }
            }
        }
    }

    /// Continue a header split over reads. Returns the header once complete.
    #[cold]
    fn fill_spill(
        &mut self,
        input: &[u8],
        pos: &mut usize,
    ) -> Result<Option<FrameHeader>, ProtocolError> {
        loop {
            let have = self.spill_len as usize;
            let need = if have < 2 {
                2
            } else {
                frame::header_len(self.spill[1])
            };
            if have == need {
                break;
            }
            let take = (need - have).min(input.len() - *pos);
            if take == 0 {
                return Ok(None);
            }
            self.spill[have..have + take].copy_from_slice(&input[*pos..*pos + take]);
            *pos += take;
            self.spill_len = (have + take) as u8;
            if have < 2 && have + take >= 2 {
                self.check_start(self.spill[0], self.spill[1])?;
            }
        }
        let len = self.spill_len as usize;
        self.spill_len = 0;
        Ok(Some(frame::decode_complete_header(&self.spill[..len])?))
    }

    /// The checks that the first two header bytes decide.
    #[inline(always)]
    fn check_start(&self, b0: u8, b1: u8) -> Result<(), ProtocolError> {
        let op = b0 & 0x0f;
        match op {
            0 => {
                if self.msg_op == 0 {
                    return Err(E_CONT_NO_START);
                }
            }
            1 | 2 => {
                if self.msg_op != 0 {
                    return Err(E_DATA_IN_FRAGMENTED);
                }
            }
            8..=10 => {
                if b0 & 0x80 == 0 {
                    return Err(E_CTRL_FRAGMENTED);
                }
                if b1 & 0x7f > 125 {
                    return Err(E_CTRL_TOO_LONG);
                }
            }
            _ => return Err(E_OPCODE),
        }
        let rsv = b0 & 0x70;
        if rsv != 0 && !(rsv == 0x40 && self.flags & F_ALLOW_RSV1 != 0 && (op == 1 || op == 2)) {
            return Err(E_RSV);
        }
        let masked = b1 & 0x80 != 0;
        let client = self.flags & F_CLIENT != 0;
        if masked == client {
            return Err(if masked { E_MASKED } else { E_UNMASKED });
        }
        Ok(())
    }

    /// Limits and bookkeeping for a frame whose header is complete (and passed `check_start`).
    #[inline(always)]
    fn begin_frame(&mut self, h: &FrameHeader) -> Result<(), ProtocolError> {
        let len = h.payload_len;
        if len > self.max_frame {
            return Err(E_FRAME_TOO_BIG);
        }
        match h.opcode {
            1 | 2 => {
                if len > self.max_message {
                    return Err(E_MESSAGE_TOO_BIG);
                }
                self.msg_op = h.opcode;
                if h.rsv != 0 {
                    self.flags |= F_MSG_RSV1;
                } else {
                    self.flags &= !F_MSG_RSV1;
                }
            }
            0 => {
                if (self.buf.len() as u64).saturating_add(len) > self.max_message {
                    return Err(E_MESSAGE_TOO_BIG);
                }
            }
            _ => self.ctrl_len = len as u8,
        }
        self.op = h.opcode;
        if h.fin {
            self.flags |= F_FIN;
        } else {
            self.flags &= !F_FIN;
        }
        self.key = h.mask.unwrap_or([0; 4]);
        self.phase = 0;
        self.remaining = len;
        Ok(())
    }

    /// A frame whose whole (unmasked) payload is at hand.
    #[inline(always)]
    fn whole_frame(
        &mut self,
        payload: &[u8],
        dec: &mut Option<&mut dyn Decompressor>,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), ProtocolError> {
        let fin = self.flags & F_FIN != 0;
        match self.op {
            1 | 2 if fin => {
                // A complete unfragmented message: zero-copy.
                self.msg_op = 0;
                let deliver = self.close & C_QUEUED == 0;
                if self.flags & F_MSG_RSV1 != 0 {
                    if let Some(d) = dec.as_deref_mut() {
                        return self.deliver_compressed(d, payload, self.op == 1, on_event);
                    }
                }
                if self.op == 1 && self.flags & F_MSG_RSV1 == 0 {
                    let s = simdutf8::basic::from_utf8(payload).map_err(|_| E_UTF8)?;
                    if deliver {
                        on_event(Event::Text(s));
                    }
                } else if deliver {
                    on_event(Event::Binary(payload));
                }
                Ok(())
            }
            0..=2 => {
                self.append_data(payload, fin)?;
                if fin {
                    self.finish_message(dec, on_event)?;
                }
                Ok(())
            }
            _ => self.control_frame(payload, on_event),
        }
    }

    /// Append a piece of the data message being assembled; validate text incrementally unless `last` (the final
    /// piece is validated with the whole message by `finish_message`).
    #[inline]
    fn append_data(&mut self, chunk: &[u8], last: bool) -> Result<(), ProtocolError> {
        let old = self.buf.len();
        if self.buf.capacity() - old < chunk.len() {
            self.buf
                .reserve(chunk.len() + self.remaining.min(MAX_RESERVE) as usize);
        }
        self.buf.extend_from_slice(chunk);
        if !last && self.msg_op == 1 && self.flags & F_MSG_RSV1 == 0 {
            let start = old - self.utf8_tail as usize;
            match simdutf8::compat::from_utf8(&self.buf[start..]) {
                Ok(_) => self.utf8_tail = 0,
                Err(e) => {
                    if e.error_len().is_some() {
                        return Err(E_UTF8);
                    }
                    self.utf8_tail = (self.buf.len() - start - e.valid_up_to()) as u8;
                }
            }
        }
        Ok(())
    }

    /// The final frame of an assembled message is complete: deliver it from the reassembly buffer.
    fn finish_message(
        &mut self,
        dec: &mut Option<&mut dyn Decompressor>,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), ProtocolError> {
        let text = self.msg_op == 1 && self.flags & F_MSG_RSV1 == 0;
        let compressed_text = self.msg_op == 1;
        self.msg_op = 0;
        self.utf8_tail = 0;
        let deliver = self.close & C_QUEUED == 0;
        let r = if self.flags & F_MSG_RSV1 != 0 && dec.is_some() {
            let d = dec.as_deref_mut().expect("checked above");
            let buf = std::mem::take(&mut self.buf);
            let r = self.deliver_compressed(d, &buf, compressed_text, on_event);
            self.buf = buf;
            r
        } else if text {
            match simdutf8::basic::from_utf8(&self.buf) {
                Ok(s) => {
                    if deliver {
                        on_event(Event::Text(s));
                    }
                    Ok(())
                }
                Err(_) => Err(E_UTF8),
            }
        } else {
            if deliver {
                on_event(Event::Binary(&self.buf));
            }
            Ok(())
        };
        self.buf.clear();
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
        r
    }

    /// Decompress a complete compressed message, validate it and deliver it (nothing is decompressed once our close
    /// frame is queued: no event would follow).
    #[inline(never)]
    fn deliver_compressed(
        &self,
        d: &mut dyn Decompressor,
        payload: &[u8],
        text: bool,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), ProtocolError> {
        if self.close & C_QUEUED != 0 {
            return Ok(());
        }
        let out = d.decompress(payload, text, self.max_message as usize)?;
        if text {
            let s = simdutf8::basic::from_utf8(out).map_err(|_| E_UTF8)?;
            on_event(Event::Text(s));
        } else {
            on_event(Event::Binary(out));
        }
        Ok(())
    }

    /// A complete control frame (`self.op` is 8, 9 or 10; `payload` is unmasked and at most 125 bytes).
    #[cold]
    fn control_frame(
        &mut self,
        payload: &[u8],
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), ProtocolError> {
        let open = self.close & C_QUEUED == 0;
        match self.op {
            0x9 => {
                if open {
                    if self.flags & F_NO_AUTO_PONG == 0 {
                        self.queue_control(OpCode::Pong, payload);
                    }
                    on_event(Event::Ping(payload));
                }
            }
            0xA => {
                if open {
                    on_event(Event::Pong(payload));
                }
            }
            _ => {
                let (code, reason) = match payload.len() {
                    0 => (None, ""),
                    1 => return Err(E_CLOSE_LEN1),
                    _ => {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        if !is_valid_close_code(code) {
                            return Err(E_CLOSE_CODE);
                        }
                        let reason =
                            simdutf8::basic::from_utf8(&payload[2..]).map_err(|_| E_CLOSE_UTF8)?;
                        (Some(code), reason)
                    }
                };
                self.close |= C_RECEIVED;
                if open {
                    self.queue_close(code.unwrap_or(1000), "");
                }
                self.buf = Vec::new();
                self.msg_op = 0;
                self.utf8_tail = 0;
                on_event(Event::Close { code, reason });
            }
        }
        Ok(())
    }
}
