//! The registration engine's side of one upstream registration (REGISTER, 401, REGISTER with
//! digest credentials, 200), as the gateway runs it after a restart: bindings wait under the
//! global pace, a timer turn sends the next one, the challenge comes back and is answered, the
//! 200 completes it.
//!
//! [`RegCycle::cycle`] splits the work into the engine's part ([`RegCycle::engine_send`],
//! [`RegCycle::engine_receive`]) and the registrar's (parse the REGISTER, build the answer),
//! each in its own non-inlined function, so that
//! `valgrind --tool=callgrind --toggle-collect='*RegCycle*engine_*'` counts the engine alone.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use vigil_proto::auth::Password;
use vigil_proto::framing::{check_datagram, DatagramKind};
use vigil_proto::msg::{HeaderName, Message};
use vigil_proto::reg::{BindingConfig, BindingId, RegConfig, RegEvent, Registrations};
use vigil_proto::rng::CoreRng;
use vigil_proto::txn::{Peer, Transport};

/// The pace the bench runs at; one cycle advances the clock by one pace interval.
const RATE: u32 = 2_000;

/// A challenge as Kamailio's `auth` module sends it (qop=auth, MD5).
const CHALLENGE: &str = "Digest realm=\"vigil.test\", \
    nonce=\"Z0b7mWdG+m0d6B0Qo3l7Xn7bJ1F0cJgH\", qop=\"auth\"";

/// An engine with `n` bindings waiting under the pace, and a registrar that challenges the
/// first REGISTER of each binding and accepts the second.
pub struct RegCycle {
    engine: Registrations,
    upstream: Peer,
    now: Instant,
    step: Duration,
    registered: usize,
}

impl RegCycle {
    /// `n` bindings added at once, as the restart's load adds them.
    pub fn new(n: u64) -> Self {
        let mut config = RegConfig::new("192.0.2.1:5060");
        config.max_registers_per_sec = RATE;
        // The daemon's default burst (`[reg] pace_burst`): with a burst of 1, two tokens
        // earned in one cycle would be capped at one, halving the pace.
        config.pace_burst = 10;
        // Both REGISTERs of a registration count against the pace.
        let step = Duration::from_secs(1) / RATE * 2;
        let mut engine = Registrations::new(config, CoreRng::from_seed(7)).expect("config");
        let upstream = Peer {
            transport: Transport::Udp,
            addr: "192.0.2.10:5060".parse::<SocketAddr>().expect("address"),
        };
        let now = vigil_proto::netem::test_epoch();
        engine.reserve(usize::try_from(n).unwrap_or(0));
        for i in 0..n {
            let cfg = BindingConfig {
                user: format!("user{i}"),
                domain: "vigil.test".into(),
                auth_user: None,
                password: Password::new("secret"),
                outbound_proxy: None,
                upstream,
                expires: 3600,
                contact_token: format!("tok{i:08}"),
            };
            engine.add_binding(now, BindingId(i), cfg).expect("binding");
        }
        Self {
            engine,
            upstream,
            now,
            step,
            registered: 0,
        }
    }

    /// Registrations completed so far.
    pub fn registered(&self) -> usize {
        self.registered
    }

    /// One pace interval (the time two REGISTERs take under the pace, so about one
    /// registration): the timer turn sends what the pace allows, the registrar answers each
    /// REGISTER at once and the engine takes each answer, until nothing more goes out.
    /// Returns the bytes that crossed the wire (so the work cannot be optimised away).
    pub fn cycle(&mut self) -> usize {
        self.now += self.step;
        let mut wire = 0;
        let mut out = self.engine_send();
        while let Some(request) = out.pop() {
            let answer = registrar(&request);
            wire += request.len() + answer.len();
            out.extend(self.engine_receive(answer));
        }
        wire
    }

    /// The timer turn: the pace releases the next bindings, whose REGISTERs go out.
    #[inline(never)]
    pub fn engine_send(&mut self) -> Vec<Bytes> {
        self.engine.handle_timeout(self.now);
        self.drain()
    }

    /// A response arrives: parse it, hand it to the engine, take what it sends in return.
    #[inline(never)]
    pub fn engine_receive(&mut self, bytes: Bytes) -> Vec<Bytes> {
        // The UDP transport's framing check, the parse and the driver's header check
        // (`CoreDriver::handle_message`), as the daemon runs them.
        let DatagramKind::Message(range) = check_datagram(&bytes) else {
            panic!("the registrar's answer frames");
        };
        let msg = Message::parse(bytes.slice(range)).expect("response parses");
        msg.check().expect("the registrar's answer is well-formed");
        self.engine.handle_incoming(self.now, msg, self.upstream);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Bytes> {
        while let Some(event) = self.engine.poll_event() {
            if matches!(event, RegEvent::Registered { .. }) {
                self.registered += 1;
            }
        }
        let mut out = Vec::new();
        while let Some(t) = self.engine.poll_transmit() {
            out.push(t.bytes);
        }
        out
    }
}

/// The registrar: 401 with [`CHALLENGE`] to a REGISTER without credentials, else 200 with
/// the Contact and its expiry. The responses are Kamailio's (5.6, `auth` + `registrar`) to
/// the byte: its header order, `rport` and `received` on the Via, a To tag, a `Server`
/// header, so the engine parses what it parses in production.
#[inline(never)]
fn registrar(request: &Bytes) -> Bytes {
    let req = Message::parse(request.clone()).expect("REGISTER parses");
    let h = |name| req.header(name).expect("REGISTER header");
    let via = h(HeaderName::Via);
    let (status, to_tag, extra) = if req.header(HeaderName::Authorization).is_none() {
        (
            "401 Unauthorized",
            "b9dcc20e5ffba37e2b03af6a7ee57ad3.796f7582",
            format!("WWW-Authenticate: {CHALLENGE}\r\n"),
        )
    } else {
        (
            "200 OK",
            "b9dcc20e5ffba37e2b03af6a7ee57ad3.c04c7582",
            format!("Contact: {}\r\n", h(HeaderName::Contact)),
        )
    };
    format!(
        "SIP/2.0 {status}\r\nVia: {via}=5060;received=192.0.2.1\r\nFrom: {}\r\nTo: {};tag={to_tag}\r\n\
         Call-ID: {}\r\nCSeq: {}\r\n{extra}Server: kamailio (5.6.3 (x86_64/linux))\r\n\
         Content-Length: 0\r\n\r\n",
        h(HeaderName::From),
        h(HeaderName::To),
        h(HeaderName::CallId),
        h(HeaderName::CSeq),
    )
    .into_bytes()
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_complete_registrations_at_the_pace() {
        let mut r = RegCycle::new(500);
        let mut wire = 0;
        for _ in 0..400 {
            wire += r.cycle();
        }
        // The pace allows one registration (two REGISTERs) per cycle, give or take the
        // burst of ten at the start.
        let done = r.registered();
        assert!((390..=410).contains(&done), "{done} registrations");
        assert!(
            wire > 1_000 * done,
            "four messages crossed per registration"
        );
    }
}
