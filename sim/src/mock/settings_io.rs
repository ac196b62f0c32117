//! A byte-stream shim under the HTTP/2 server that can lower the peer's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` in the middle of a connection.
//!
//! APNs has been seen to drop a connection's stream limit to 1 after a rejected push. The
//! `h2` crate fixes the limit at handshake and has no API to change it later, so this shim
//! does the SETTINGS exchange itself:
//!
//! ```text
//!   server (h2) ──frames──▶ [shim: at a frame boundary, insert SETTINGS(MAX_CONCURRENT_STREAMS=1)] ──▶ client
//!   server (h2) ◀──frames── [shim: swallow the client's ACK of *our* SETTINGS]                     ◀── client
//! ```
//!
//! SETTINGS ACKs arrive in the order the SETTINGS frames were sent (RFC 9113 §6.5.3), so
//! the shim keeps a queue of outstanding SETTINGS frames, marking which were its own, and
//! hides the matching ACKs from `h2` (which would otherwise treat an unexpected ACK as a
//! protocol error). Once the ACK arrives the limit is in force: the client must not open
//! more streams, and [`StreamLimit::in_force`] tells the server to refuse any it does.
//!
//! Only frame headers are parsed; payloads pass through untouched, and the shim holds at
//! most one partial frame header per direction.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::mock::record::lock;

const FRAME_HEADER_LEN: usize = 9;
const FRAME_SETTINGS: u8 = 0x4;
const FLAG_ACK: u8 = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
/// The client connection preface (RFC 9113 §3.4) precedes the client's first frame.
const CLIENT_PREFACE_LEN: usize = 24;

/// Shared control of one connection's injected stream limit.
#[derive(Default)]
pub(crate) struct StreamLimit {
    requested: AtomicBool,
    sent: AtomicBool,
    in_force: AtomicBool,
    /// Outstanding SETTINGS frames in send order; `true` marks ours.
    outstanding: Mutex<VecDeque<bool>>,
}

impl StreamLimit {
    /// Asks for SETTINGS_MAX_CONCURRENT_STREAMS = 1 to be sent at the next frame boundary.
    /// Returns true the first time (so the caller counts each connection once).
    pub(crate) fn request_drop_to_one(&self) -> bool {
        !self.requested.swap(true, Ordering::SeqCst)
    }

    /// Whether the client has acknowledged the lowered limit.
    pub(crate) fn in_force(&self) -> bool {
        self.in_force.load(Ordering::SeqCst)
    }

    fn take_pending(&self) -> bool {
        self.requested.load(Ordering::SeqCst) && !self.sent.swap(true, Ordering::SeqCst)
    }

    fn pending(&self) -> bool {
        self.requested.load(Ordering::SeqCst) && !self.sent.load(Ordering::SeqCst)
    }
}

/// Frame-boundary tracker for one direction of the stream.
#[derive(Default)]
struct FrameCursor {
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    payload_left: usize,
}

impl FrameCursor {
    fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.payload_left == 0
    }
}

/// The shim; wraps the TLS stream the HTTP/2 server runs on.
pub(crate) struct SettingsIo<T> {
    inner: T,
    limit: Arc<StreamLimit>,
    out: FrameCursor,
    inject: Option<([u8; 15], usize)>,
    preface_left: usize,
    in_cursor: FrameCursor,
    /// Bytes read from the peer that are not yet passed up (at most one partial header).
    held: Vec<u8>,
    /// Bytes ready to be passed up to `h2`.
    ready: Vec<u8>,
    ready_pos: usize,
}

impl<T> SettingsIo<T> {
    pub(crate) fn new(inner: T, limit: Arc<StreamLimit>) -> Self {
        Self {
            inner,
            limit,
            out: FrameCursor::default(),
            inject: None,
            preface_left: CLIENT_PREFACE_LEN,
            in_cursor: FrameCursor::default(),
            held: Vec::with_capacity(FRAME_HEADER_LEN),
            ready: Vec::new(),
            ready_pos: 0,
        }
    }

    /// Advances the outgoing cursor over bytes `h2` wrote, noting its SETTINGS frames.
    fn track_out(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.out.payload_left > 0 {
                let n = bytes.len().min(self.out.payload_left);
                self.out.payload_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = bytes.len().min(FRAME_HEADER_LEN - self.out.header_len);
            self.out.header[self.out.header_len..self.out.header_len + n]
                .copy_from_slice(&bytes[..n]);
            self.out.header_len += n;
            bytes = &bytes[n..];
            if self.out.header_len == FRAME_HEADER_LEN {
                let h = self.out.header;
                self.out.header_len = 0;
                self.out.payload_left = frame_len(&h);
                if h[3] == FRAME_SETTINGS && h[4] & FLAG_ACK == 0 {
                    lock(&self.limit.outstanding).push_back(false);
                }
            }
        }
    }

    /// Moves complete pieces from `held` to `ready`, dropping ACKs of our SETTINGS.
    fn filter_in(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = bytes.len().min(self.preface_left);
                self.ready.extend_from_slice(&bytes[..n]);
                self.preface_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            if self.in_cursor.payload_left > 0 {
                let n = bytes.len().min(self.in_cursor.payload_left);
                self.ready.extend_from_slice(&bytes[..n]);
                self.in_cursor.payload_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = bytes.len().min(FRAME_HEADER_LEN - self.held.len());
            self.held.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.held.len() < FRAME_HEADER_LEN {
                continue;
            }
            let mut h = [0u8; FRAME_HEADER_LEN];
            h.copy_from_slice(&self.held);
            self.held.clear();
            let len = frame_len(&h);
            let is_ack = h[3] == FRAME_SETTINGS && h[4] & FLAG_ACK != 0;
            let ours = is_ack && lock(&self.limit.outstanding).pop_front() == Some(true);
            if ours && len == 0 {
                self.limit.in_force.store(true, Ordering::SeqCst);
                continue;
            }
            // Everything else (including a malformed ACK with a payload, which h2 will
            // reject as the protocol demands) goes up unchanged.
            self.ready.extend_from_slice(&h);
            self.in_cursor.payload_left = len;
        }
    }

    /// Writes out a pending injected SETTINGS frame; Ready(Ok) once none is pending.
    fn poll_inject(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>
    where
        T: AsyncWrite + Unpin,
    {
        if self.inject.is_none() && self.out.at_boundary() && self.limit.take_pending() {
            lock(&self.limit.outstanding).push_back(true);
            self.inject = Some((settings_frame_max_streams(1), 0));
        }
        while let Some((frame, pos)) = self.inject.as_mut() {
            let n = match Pin::new(&mut self.inner).poll_write(cx, &frame[*pos..]) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *pos += n;
            if *pos == frame.len() {
                self.inject = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn frame_len(h: &[u8; FRAME_HEADER_LEN]) -> usize {
    (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2])
}

fn settings_frame_max_streams(value: u32) -> [u8; 15] {
    let mut f = [0u8; 15];
    f[2] = 6; // payload length: one setting
    f[3] = FRAME_SETTINGS;
    f[9..11].copy_from_slice(&SETTINGS_MAX_CONCURRENT_STREAMS.to_be_bytes());
    f[11..15].copy_from_slice(&value.to_be_bytes());
    f
}

impl<T: AsyncRead + Unpin> AsyncRead for SettingsIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ready_pos < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_pos);
                buf.put_slice(&this.ready[this.ready_pos..this.ready_pos + n]);
                this.ready_pos += n;
                if this.ready_pos == this.ready.len() {
                    this.ready.clear();
                    this.ready_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            let filled = rb.filled();
            if filled.is_empty() {
                // EOF: pass up any partial header so h2 sees the truncation.
                this.ready.append(&mut this.held);
                if this.ready.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let data = filled.to_vec();
            this.filter_in(&data);
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SettingsIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match this.poll_inject(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        // With an injection waiting, stop at the end of the current header or payload so
        // the next write starts on a frame boundary.
        let limit = if this.limit.pending() && !this.out.at_boundary() {
            if this.out.payload_left > 0 {
                this.out.payload_left
            } else {
                FRAME_HEADER_LEN - this.out.header_len
            }
        } else {
            buf.len()
        };
        let n = match Pin::new(&mut this.inner).poll_write(cx, &buf[..buf.len().min(limit)]) {
            Poll::Ready(Ok(n)) => n,
            other => return other,
        };
        this.track_out(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.poll_inject(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    fn parse(mut bytes: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let len = frame_len(bytes[..9].try_into().expect("a full header"));
            frames.push((bytes[3], bytes[4], bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        frames
    }

    /// Whatever the write chunking, the injected SETTINGS lands between two whole frames.
    #[tokio::test]
    async fn injection_waits_for_a_frame_boundary() {
        for chunk in [1, 2, 5, 9, 10, 13, 100] {
            let (server_end, mut peer) = tokio::io::duplex(1 << 16);
            let limit = Arc::new(StreamLimit::default());
            let mut io = SettingsIo::new(server_end, limit.clone());
            let original: Vec<u8> = [
                frame(FRAME_SETTINGS, 0, &[0, 3, 0, 0, 3, 0xe8]),
                frame(0x1, 0x4, &[0xaa; 20]),
                frame(0x0, 0x1, &[0xbb; 33]),
            ]
            .concat();
            let pieces: Vec<&[u8]> = original.chunks(chunk).collect();
            for (i, piece) in pieces.iter().enumerate() {
                // Mid-stream (mid-frame for most chunk sizes); at the start for one piece.
                if i == pieces.len() / 2 {
                    assert!(limit.request_drop_to_one());
                }
                io.write_all(piece).await.expect("write");
            }
            io.flush().await.expect("flush");
            drop(io);
            let mut wire = Vec::new();
            peer.read_to_end(&mut wire).await.expect("read");
            let frames = parse(&wire);
            assert_eq!(frames.len(), 4, "chunk {chunk}");
            let injected = frames
                .iter()
                .position(|(k, _, p)| *k == FRAME_SETTINGS && *p == [0, 3, 0, 0, 0, 1])
                .expect("injected SETTINGS");
            let mut rest = frames.clone();
            rest.remove(injected);
            assert_eq!(rest, parse(&original), "chunk {chunk}");
            assert_eq!(
                *lock(&limit.outstanding),
                VecDeque::from(if injected == 0 {
                    vec![true, false]
                } else {
                    vec![false, true]
                })
            );
        }
    }

    /// The ACK of our SETTINGS is hidden from h2; the ACK of h2's own is passed up.
    #[tokio::test]
    async fn only_our_ack_is_swallowed() {
        let (server_end, mut peer) = tokio::io::duplex(1 << 16);
        let limit = Arc::new(StreamLimit::default());
        lock(&limit.outstanding).extend([false, true]);
        let mut io = SettingsIo::new(server_end, limit.clone());
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let ping = frame(0x6, 0, &[7; 8]);
        let ack = frame(FRAME_SETTINGS, FLAG_ACK, &[]);
        let input = [&preface[..], &ack, &ping, &ack, &ping].concat();
        for piece in input.chunks(4) {
            peer.write_all(piece).await.expect("write");
        }
        drop(peer);
        let mut seen = Vec::new();
        io.read_to_end(&mut seen).await.expect("read");
        let expected = [&preface[..], &ack, &ping, &ping].concat();
        assert_eq!(seen, expected);
        assert!(limit.in_force());
        assert!(lock(&limit.outstanding).is_empty());
    }
}
