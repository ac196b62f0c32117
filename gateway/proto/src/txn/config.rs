//! Transaction timer values (RFC 3261 §17 and Table 4, RFC 6026) and layer limits.

use std::time::Duration;

use super::Transport;

/// Timer values and limits of a transaction layer. The defaults are the RFC's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// RTT estimate, the base of every retransmission and timeout timer (RFC: 500 ms).
    pub t1: Duration,
    /// Cap of non-INVITE request and INVITE response retransmission intervals (RFC: 4 s).
    pub t2: Duration,
    /// Maximum time a message stays in the network (RFC: 5 s).
    pub t4: Duration,
    /// How long an INVITE server transaction waits for the TU's first response before it
    /// sends 100 Trying itself (RFC 3261 §17.2.1: "within 200 ms").
    pub trying_delay: Duration,
    /// How long an INVITE client transaction waits in Proceeding for a final response before
    /// it reports a timeout. RFC 3261 puts no limit there (the TU is expected to CANCEL); this
    /// bound, like a proxy's Timer C (§16.6, > 3 min), keeps a silent server from pinning
    /// memory forever.
    pub invite_proceeding_limit: Duration,
    /// Most live transactions (client plus server). At the limit, new incoming requests are
    /// answered 503 statelessly and [`super::Transactions::send_request`] fails.
    pub max_transactions: usize,
    /// The Retry-After value (seconds) of an overload 503.
    pub overload_retry_after: u32,
}

impl Default for TxnConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            trying_delay: Duration::from_millis(200),
            invite_proceeding_limit: Duration::from_secs(181),
            max_transactions: 200_000,
            overload_retry_after: 5,
        }
    }
}

impl TxnConfig {
    /// 64·T1: Timers B, F, H, J (unreliable), L and M.
    pub fn timeout_64t1(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: at least 32 s on UDP, 0 on reliable transports (RFC 3261 §17.1.1.2).
    pub fn timer_d(&self, transport: Transport) -> Duration {
        if transport.is_reliable() {
            Duration::ZERO
        } else {
            self.timeout_64t1().max(Duration::from_secs(32))
        }
    }

    /// Timer K (non-INVITE client linger) and Timer I (INVITE server linger after ACK):
    /// T4 on UDP, 0 on reliable transports.
    pub fn timer_k_i(&self, transport: Transport) -> Duration {
        if transport.is_reliable() {
            Duration::ZERO
        } else {
            self.t4
        }
    }

    /// Timer J: 64·T1 on UDP, 0 on reliable transports.
    pub fn timer_j(&self, transport: Transport) -> Duration {
        if transport.is_reliable() {
            Duration::ZERO
        } else {
            self.timeout_64t1()
        }
    }
}

/// The named transaction timers, reported in [`super::TxnEvent::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TxnTimer {
    /// INVITE client request retransmission (UDP).
    A,
    /// INVITE client timeout in Calling.
    B,
    /// INVITE client limit in Proceeding ([`TxnConfig::invite_proceeding_limit`]).
    C,
    /// INVITE client linger in Completed (absorbs final response retransmissions).
    D,
    /// Non-INVITE client request retransmission (UDP).
    E,
    /// Non-INVITE client timeout.
    F,
    /// INVITE server final response retransmission (UDP).
    G,
    /// INVITE server wait for ACK.
    H,
    /// INVITE server linger in Confirmed (absorbs ACK retransmissions).
    I,
    /// Non-INVITE server linger in Completed.
    J,
    /// Non-INVITE client linger in Completed.
    K,
    /// INVITE server linger in Accepted (RFC 6026).
    L,
    /// INVITE client linger in Accepted (RFC 6026).
    M,
    /// INVITE server: send 100 Trying if the TU has not answered yet.
    Trying,
}
