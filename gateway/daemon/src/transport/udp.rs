//! The UDP receive loop: one task per bound socket; sends happen from the core driver.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;
use tracing::{debug, trace};
use vigil_proto::framing::{check_datagram, DatagramKind};
use vigil_proto::txn::Peer;

use super::{Inbound, InboundKind, Shared};

/// The largest UDP payload: one read always holds a whole datagram.
const MAX_DATAGRAM: usize = 65_535;

pub(super) async fn run(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            _ = shared.life.shutdown.cancelled() => break,
            r = sock.recv_from(&mut buf) => r,
        };
        match received {
            Ok((n, from)) => handle(&buf[..n], from, &shared),
            // On Linux an ICMP port-unreachable for an earlier send surfaces here as
            // ConnectionRefused; it concerns that send, not this socket, so keep reading.
            Err(e) => debug!(error = %e, "UDP receive error"),
        }
    }
    debug!("UDP receive loop stopped");
}

fn handle(data: &[u8], from: SocketAddr, shared: &Shared) {
    let peer = Peer::udp(from);
    let kind = match check_datagram(data) {
        DatagramKind::KeepAlive => {
            trace!(%peer, "UDP keep-alive");
            return;
        }
        DatagramKind::Message(range) => InboundKind::Message(Bytes::copy_from_slice(&data[range])),
        DatagramKind::Error(error) => {
            debug!(%peer, %error, len = data.len(), "unframable datagram");
            InboundKind::MalformedDatagram {
                bytes: Bytes::copy_from_slice(data),
                error,
            }
        }
        _ => return,
    };
    // Never wait on a full queue here: UDP senders retransmit, and a blocked receive loop
    // would only move the loss into the kernel's socket buffer.
    match shared.inbound.try_send(Inbound { peer, kind }) {
        Ok(()) => {}
        // Logged at debug: under overload a line per drop would add to the load.
        Err(TrySendError::Full(_)) => debug!(%peer, "core busy: dropped a UDP message"),
        Err(TrySendError::Closed(_)) => {}
    }
}
