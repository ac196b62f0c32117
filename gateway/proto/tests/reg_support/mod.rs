//! Test harness for the registration engine: a fake registrar with real digest checks and
//! a scriptable misbehaviour queue, and a virtual-time loop that shuttles messages between
//! it and a [`Registrations`] engine with a fixed one-way latency.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use vigil_proto::auth::{
    Algorithm, Credentials, DigestRequest, DigestServer, Password, Secret, ServerConfig,
    ServerSecret,
};
use vigil_proto::msg::{HeaderName, Message, Method, ResponseBuilder};
use vigil_proto::netem::test_epoch;
use vigil_proto::reg::{BindingConfig, BindingId, RegConfig, RegEvent, Registrations};
use vigil_proto::rng::CoreRng;
use vigil_proto::txn::{Peer, Transport};

pub const PASSWORD: &str = "s3cret-pw";
pub const GATEWAY: &str = "gw.example.net:5070";

pub fn upstream(transport: Transport) -> Peer {
    Peer {
        transport,
        addr: "192.0.2.10:5060".parse::<SocketAddr>().unwrap(),
    }
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A binding for user `u{n}` with token `t{n}`.
pub fn binding(n: u64, expires: u32) -> BindingConfig {
    BindingConfig {
        user: format!("u{n}"),
        domain: "example.org".into(),
        auth_user: None,
        password: Password::new(PASSWORD),
        outbound_proxy: None,
        upstream: upstream(Transport::Udp),
        expires,
        contact_token: format!("t{n}"),
    }
}

/// A canned answer the registrar gives instead of its normal behaviour.
#[derive(Clone, Debug)]
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(HeaderName, String)>,
}

impl Scripted {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
        }
    }

    pub fn with(mut self, name: HeaderName, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// What the registrar does with a REGISTER.
#[allow(clippy::large_enum_variant)] // short-lived, one at a time
pub enum Action {
    Respond(Message),
    /// Swallow it (the client's transaction retransmits, then times out).
    Drop,
}

/// A registrar with digest auth (RFC 7616 via the crate's `DigestServer`), optionally behind
/// a proxy that challenges with 407, 423 for short expiries, and a script that overrides it.
pub struct Registrar {
    pub rng: CoreRng,
    pub epoch: Instant,
    pub auth: Option<DigestServer>,
    pub proxy_auth: Option<DigestServer>,
    pub min_expires: Option<u32>,
    /// Granted expiry; `None` grants what was asked.
    pub grant: Option<u32>,
    /// Also put the granted expiry in an `Expires` header of this value (to check the
    /// Contact parameter wins).
    pub expires_header: Option<u32>,
    pub script: VecDeque<Scripted>,
    /// Drop this many requests before answering again.
    pub drop: usize,
    /// Every REGISTER received, with the time.
    pub received: Vec<(Instant, Message)>,
    /// Contact token -> binding expiry.
    pub bound: HashMap<String, Instant>,
    pub registered_ok: usize,
    /// Set `stale=true` on challenges for expired nonces (RFC 7616); off behaves like
    /// registrars that just send a fresh challenge.
    pub stale_flag: bool,
}

pub fn digest_server(rng: &mut CoreRng, realm: &str, algorithms: &[Algorithm]) -> DigestServer {
    let mut cfg = ServerConfig::new(realm);
    cfg.algorithms = algorithms.to_vec();
    cfg.nonce_lifetime = Duration::from_secs(86_400);
    cfg.replay_capacity = 1 << 20;
    DigestServer::new(cfg, ServerSecret::random(rng)).unwrap()
}

impl Registrar {
    pub fn new(epoch: Instant, seed: u64) -> Self {
        Self {
            rng: CoreRng::from_seed(seed),
            epoch,
            auth: None,
            proxy_auth: None,
            min_expires: None,
            grant: None,
            expires_header: None,
            script: VecDeque::new(),
            drop: 0,
            received: Vec::new(),
            bound: HashMap::new(),
            registered_ok: 0,
            stale_flag: true,
        }
    }

    /// Requires digest with these algorithms (nonces fresh for a day unless changed).
    pub fn with_auth(mut self, algorithms: &[Algorithm]) -> Self {
        self.auth = Some(digest_server(&mut self.rng, "example.org", algorithms));
        self
    }

    fn wall(&self, now: Instant) -> Duration {
        Duration::from_secs(1_700_000_000) + (now - self.epoch)
    }

    fn check(
        server: &mut DigestServer,
        wall: Duration,
        rng: &mut CoreRng,
        req: &Message,
        header: HeaderName,
        stale_flag: bool,
    ) -> Result<(), (bool, Vec<String>)> {
        let uri = req.request_uri_str().unwrap().to_owned();
        let dreq = DigestRequest {
            method: "REGISTER",
            uri: &uri,
            body: b"",
        };
        let user = req
            .from_hdr()
            .unwrap()
            .uri()
            .expect("uri")
            .user()
            .unwrap()
            .into_owned();
        let secret = Secret::Password(Password::new(PASSWORD));
        let mut stale = false;
        for v in req.header_lines(header) {
            let Ok(creds) = Credentials::parse(v) else {
                continue;
            };
            if creds.realm != server.config().realm {
                continue;
            }
            match server.verify(wall, &dreq, &creds, &user, &secret) {
                Ok(_) => return Ok(()),
                Err(d) => stale |= d.stale,
            }
        }
        let ch = server.challenges(wall, rng, stale && stale_flag);
        Err((stale, ch.iter().map(|c| c.to_string()).collect()))
    }

    pub fn handle(&mut self, now: Instant, req: &Message) -> Action {
        if req.method() != Some(Method::Register) {
            return Action::Drop;
        }
        self.received.push((now, req.clone()));
        if self.drop > 0 {
            self.drop -= 1;
            return Action::Drop;
        }
        let tag = self.rng.tag();
        if let Some(s) = self.script.pop_front() {
            let mut rb = ResponseBuilder::for_request(req, s.status, Some(&tag));
            for (n, v) in &s.headers {
                rb = rb.header(n.clone(), v);
            }
            return Action::Respond(rb.build());
        }
        let wall = self.wall(now);
        if let Some(p) = self.proxy_auth.as_mut() {
            if let Err((_, ch)) = Self::check(
                p,
                wall,
                &mut self.rng,
                req,
                HeaderName::ProxyAuthorization,
                self.stale_flag,
            ) {
                let mut rb = ResponseBuilder::for_request(req, 407, Some(&tag));
                for c in ch {
                    rb = rb.header(HeaderName::ProxyAuthenticate, &c);
                }
                return Action::Respond(rb.build());
            }
        }
        if let Some(a) = self.auth.as_mut() {
            if let Err((_, ch)) = Self::check(
                a,
                wall,
                &mut self.rng,
                req,
                HeaderName::Authorization,
                self.stale_flag,
            ) {
                let mut rb = ResponseBuilder::for_request(req, 401, Some(&tag));
                for c in ch {
                    rb = rb.header(HeaderName::WwwAuthenticate, &c);
                }
                return Action::Respond(rb.build());
            }
        }
        let contacts = req.contacts().unwrap();
        let header_expires = req.expires().unwrap();
        let asked_of = |c: &vigil_proto::msg::Contact<'_>| {
            c.expires().unwrap().or(header_expires).unwrap_or(3600)
        };
        if let Some(min) = self.min_expires {
            if contacts
                .as_slice()
                .iter()
                .any(|c| (1..min).contains(&asked_of(c)))
            {
                return Action::Respond(
                    ResponseBuilder::for_request(req, 423, Some(&tag))
                        .header(HeaderName::MinExpires, &min.to_string())
                        .build(),
                );
            }
        }
        let mut rb = ResponseBuilder::for_request(req, 200, Some(&tag));
        let mut listed = false;
        for c in contacts.as_slice() {
            let asked = asked_of(c);
            let token = c.uri().expect("uri").user_raw().unwrap().to_owned();
            let granted = if asked == 0 {
                0
            } else {
                self.grant.unwrap_or(asked)
            };
            if granted == 0 {
                self.bound.remove(&token);
                continue;
            }
            self.bound
                .insert(token, now + Duration::from_secs(granted.into()));
            if !listed {
                rb = rb.header(
                    HeaderName::Contact,
                    "<sip:someone-else@198.51.100.7>;expires=77",
                );
                listed = true;
            }
            let uri = c.uri().expect("uri").as_str();
            rb = rb.header(HeaderName::Contact, &format!("<{uri}>;expires={granted}"));
        }
        self.registered_ok += 1;
        if let Some(e) = self.expires_header {
            rb = rb.header(HeaderName::Expires, &e.to_string());
        }
        Action::Respond(rb.build())
    }
}

/// An engine and a registrar on one virtual clock, with a fixed one-way latency.
pub struct Harness {
    pub epoch: Instant,
    pub now: Instant,
    pub engine: Registrations,
    pub registrar: Registrar,
    pub latency: Duration,
    /// Messages on their way to the engine (FIFO: the latency is fixed).
    pub to_engine: VecDeque<(Instant, Message, Peer)>,
    /// Messages on their way to the registrar.
    pub to_registrar: VecDeque<(Instant, Message)>,
    pub events: Vec<(Instant, RegEvent)>,
    /// Every message the engine sent, with the time.
    pub sent: Vec<(Instant, Peer, Message)>,
    /// Keep copies of sent messages (off for the large runs).
    pub record: bool,
}

pub fn config() -> RegConfig {
    let mut c = RegConfig::new(GATEWAY);
    c.max_registers_per_sec = 0;
    c
}

impl Harness {
    pub fn new(config: RegConfig, registrar: impl FnOnce(Instant) -> Registrar) -> Self {
        let epoch = test_epoch();
        Self {
            epoch,
            now: epoch,
            engine: Registrations::new(config, CoreRng::from_seed(42)).unwrap(),
            registrar: registrar(epoch),
            latency: Duration::from_millis(20),
            to_engine: VecDeque::new(),
            to_registrar: VecDeque::new(),
            events: Vec::new(),
            sent: Vec::new(),
            record: true,
        }
    }

    pub fn at(&self, t: Instant) -> f64 {
        (t - self.epoch).as_secs_f64()
    }

    pub fn add(&mut self, id: u64, cfg: BindingConfig) {
        self.engine
            .add_binding(self.now, BindingId(id), cfg)
            .unwrap();
        self.drain();
    }

    /// Moves the engine's output onto the wire and collects its events.
    pub fn drain(&mut self) {
        while let Some(t) = self.engine.poll_transmit() {
            let msg = Message::parse(t.bytes.clone()).unwrap();
            if self.record {
                self.sent.push((self.now, t.peer, msg.clone()));
            }
            if msg.is_request() {
                self.to_registrar.push_back((self.now + self.latency, msg));
            }
        }
        while let Some(e) = self.engine.poll_event() {
            self.events.push((self.now, e));
        }
    }

    fn next_time(&self) -> Option<Instant> {
        [
            self.engine.poll_timeout(),
            self.to_engine.front().map(|m| m.0),
            self.to_registrar.front().map(|m| m.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the next instant at which anything happens; false if nothing is left to do
    /// before `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        let Some(t) = self.next_time() else {
            return false;
        };
        if t > limit {
            return false;
        }
        self.now = self.now.max(t);
        let now = self.now;
        while self.to_registrar.front().is_some_and(|m| m.0 <= now) {
            let (_, req) = self.to_registrar.pop_front().unwrap();
            if let Action::Respond(resp) = self.registrar.handle(now, &req) {
                let resp = Message::parse(resp.as_bytes().clone()).unwrap();
                let peer = upstream(Transport::Udp);
                self.to_engine.push_back((now + self.latency, resp, peer));
            }
        }
        while self.to_engine.front().is_some_and(|m| m.0 <= now) {
            let (_, msg, _) = self.to_engine.pop_front().unwrap();
            let from = self.peer_of(&msg);
            self.engine.handle_incoming(now, msg, from);
            self.drain();
        }
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        self.drain();
        true
    }

    /// Responses come back on the transport the request went out on.
    fn peer_of(&self, msg: &Message) -> Peer {
        let via = msg.top_via().unwrap();
        let t = Transport::from_via_token(via.transport()).unwrap_or(Transport::Udp);
        upstream(t)
    }

    pub fn run_until(&mut self, t: Instant) {
        while self.step(t) {}
        self.now = self.now.max(t);
    }

    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Runs until an event matching `pred` appears (after the events seen so far), at most
    /// `limit` of virtual time; returns it.
    pub fn run_until_event(
        &mut self,
        limit: Duration,
        pred: impl Fn(&RegEvent) -> bool,
    ) -> (Instant, RegEvent) {
        let start = self.events.len();
        let end = self.now + limit;
        loop {
            if let Some(e) = self.events[start..].iter().find(|e| pred(&e.1)) {
                return e.clone();
            }
            assert!(
                self.step(end),
                "no matching event within {limit:?}; events: {:?}",
                &self.events[start..]
            );
        }
    }

    /// REGISTERs the engine sent, in order.
    pub fn registers(&self) -> Vec<(Instant, Message)> {
        self.sent
            .iter()
            .filter(|(_, _, m)| m.method() == Some(Method::Register))
            .map(|(t, _, m)| (*t, m.clone()))
            .collect()
    }
}

/// Header value helper.
pub fn hv(m: &Message, name: HeaderName) -> Option<String> {
    m.header(name).map(str::to_owned)
}

pub fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}
