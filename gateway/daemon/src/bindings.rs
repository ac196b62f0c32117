//! The binding table: every device the gateway registers for, in memory, in two lock-free
//! papaya maps — by device id (the intake API) and by Contact token (incoming requests and
//! registration events, whose `BindingId` is the token's value).
//!
//! Entries are compact because a node holds a million: the twelve text fields of a device
//! share one heap string with a table of end offsets, both sealed secrets (password, push
//! tokens) share one byte buffer, and the registration status is three atomics updated in
//! place, so an engine event never copies an entry. Secrets stay sealed in memory too; they
//! are opened only to build a REGISTER or a push, or to check credentials.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use crate::store::{DeviceRecord, DeviceView};

/// Identifies a binding on the wire (the Contact user part, 16 lowercase hex digits) and in
/// the engine (`BindingId` has the same value). Random, so it reveals nothing about the
/// device and cannot be guessed from another device's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContactToken(pub u64);

impl ContactToken {
    /// A fresh random token.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// Parses the 16-hex-digit form.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 16 {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(Self)
    }
}

impl std::fmt::Display for ContactToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Registration state of a device as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DeviceState {
    /// Waiting for the first 2xx (or for the engine to take it).
    Registering = 0,
    /// The upstream accepted the last REGISTER.
    Registered = 1,
    /// The last attempt failed; another is scheduled.
    Retrying = 2,
    /// The upstream refused for good (403, 404, rejected credentials, ...).
    Failed = 3,
    /// Being removed.
    Unregistering = 4,
}

impl DeviceState {
    /// Every state, in discriminant order.
    pub const ALL: [Self; 5] = [
        Self::Registering,
        Self::Registered,
        Self::Retrying,
        Self::Failed,
        Self::Unregistering,
    ];

    /// The API and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registering => "registering",
            Self::Registered => "registered",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::Unregistering => "unregistering",
        }
    }

    /// Parses [`Self::as_str`]; unknown names (an older or newer schema) read as
    /// registering, which makes the engine try again.
    pub fn parse(s: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .unwrap_or(Self::Registering)
    }

    fn from_u8(v: u8) -> Self {
        Self::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(Self::Registering)
    }
}

/// The text fields of a device, in their order in the shared string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Text {
    DeviceId,
    Username,
    AuthUsername,
    Domain,
    OutboundProxy,
    Transport,
    DisplayName,
    PushKind,
    PushTopic,
    PushEnv,
    AppId,
    AppVersion,
}

/// A snapshot of a binding's registration status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The state.
    pub state: DeviceState,
    /// Last final status from the upstream (0 if none).
    pub last_status: u16,
    /// Last granted expiry in seconds (0 before the first 2xx).
    pub granted_expires: u32,
    /// Next refresh (registered) or next attempt (retrying), Unix milliseconds; 0 if none.
    pub next_at_ms: u64,
    /// Why the last attempt failed, if it did.
    pub reason: Reason,
}

/// Why a registration attempt failed, kept in one byte of the status word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum Reason {
    /// Nothing failed.
    None = 0,
    /// No answer from the upstream (transaction timeout).
    Timeout = 1,
    /// The connection to the upstream failed.
    TransportError = 2,
    /// A 2xx that did not list our Contact.
    NotBound = 3,
    /// The gateway itself was overloaded.
    LocalOverload = 4,
    /// A final status worth retrying (408, 480, 5xx).
    Status = 5,
    /// 403.
    Forbidden = 6,
    /// 404.
    NotFound = 7,
    /// Credentials were rejected.
    AuthRejected = 8,
    /// A challenge the gateway cannot answer.
    UnsupportedChallenge = 9,
    /// Another final refusal.
    Rejected = 10,
    /// The SIP server's name could not be located in DNS (RFC 3263).
    UpstreamNotFound = 11,
}

impl Reason {
    const ALL: [Self; 12] = [
        Self::None,
        Self::Timeout,
        Self::TransportError,
        Self::NotBound,
        Self::LocalOverload,
        Self::Status,
        Self::Forbidden,
        Self::NotFound,
        Self::AuthRejected,
        Self::UnsupportedChallenge,
        Self::Rejected,
        Self::UpstreamNotFound,
    ];

    /// In words, for the API.
    pub fn describe(self) -> Option<&'static str> {
        Some(match self {
            Self::None => return None,
            Self::Timeout => "no answer from the SIP server",
            Self::TransportError => "connection to the SIP server failed",
            Self::NotBound => "the SIP server accepted but did not bind our contact",
            Self::LocalOverload => "gateway overloaded",
            Self::Status => "temporary failure at the SIP server",
            Self::Forbidden => "forbidden by the SIP server",
            Self::NotFound => "account not found on the SIP server",
            Self::AuthRejected => "credentials rejected",
            Self::UnsupportedChallenge => "authentication scheme not supported",
            Self::Rejected => "rejected by the SIP server",
            Self::UpstreamNotFound => "SIP server not found in DNS",
        })
    }
}

/// Where a [`Text`] field lives: in the device's own bytes or in the shared interned text.
#[derive(Clone, Copy)]
enum Place {
    Own(usize),
    Shared(usize),
}

impl Text {
    fn place(self) -> Place {
        match self {
            Self::DeviceId => Place::Own(0),
            Self::Username => Place::Own(1),
            Self::AuthUsername => Place::Own(2),
            Self::DisplayName => Place::Own(3),
            Self::Domain => Place::Shared(0),
            Self::OutboundProxy => Place::Shared(1),
            Self::Transport => Place::Shared(2),
            Self::PushKind => Place::Shared(3),
            Self::PushTopic => Place::Shared(4),
            Self::PushEnv => Place::Shared(5),
            Self::AppId => Place::Shared(6),
            Self::AppVersion => Place::Shared(7),
        }
    }
}

/// Text fields that are per device: device id, username, auth username, display name.
const OWN_FIELDS: usize = 4;
/// Text fields that many devices share: domain, outbound proxy, transport, push kind, push
/// topic, push environment, app id, app version.
const SHARED_FIELDS: usize = 8;

/// The shared text fields of one (operator, app) combination, in one string with end offsets.
/// A million devices of one app on one operator hold one of these between them.
#[derive(PartialEq, Eq, Hash)]
struct SharedText {
    text: Box<str>,
    ends: [u16; SHARED_FIELDS],
}

impl SharedText {
    fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text
            .get(usize::from(start)..usize::from(self.ends[i]))
            .expect("ends are char boundaries recorded while building the string")
    }
}

/// The process-wide interner of [`SharedText`]s. Lock-free like the binding maps; an entry
/// is dropped by the last binding that uses it (see `Drop for Binding`), so it holds no more
/// entries than there are distinct combinations in use (plus, at worst, a few left behind by
/// a race between a last drop and a new intern, which costs a few bytes and no correctness:
/// equal texts compare equal whether or not they share an allocation).
static SHARED: LazyLock<papaya::HashSet<Arc<SharedText>>> = LazyLock::new(papaya::HashSet::new);

fn intern(fields: [&str; SHARED_FIELDS]) -> Result<Arc<SharedText>, RecordError> {
    let mut text = String::with_capacity(fields.iter().map(|f| f.len()).sum());
    let mut ends = [0u16; SHARED_FIELDS];
    for (i, f) in fields.iter().enumerate() {
        text.push_str(f);
        ends[i] = u16::try_from(text.len()).map_err(|_| RecordError::TooLarge)?;
    }
    let candidate = SharedText {
        text: text.into_boxed_str(),
        ends,
    };
    let set = SHARED.pin();
    if let Some(found) = set.get(&candidate) {
        return Ok(found.clone());
    }
    let fresh = Arc::new(candidate);
    set.insert(fresh.clone());
    // Another thread may have interned the same text meanwhile: use whichever is in the set,
    // so that later bindings share one allocation.
    Ok(set.get(&*fresh).cloned().unwrap_or(fresh))
}

/// One device in memory; see the module documentation. `Debug` prints no personal data.
///
/// Layout (about 120 bytes inline, plus one heap block for what is the device's own): the
/// device id, username, auth username and display name, then the sealed password and the
/// sealed push tokens, back to back in `own`; the eight fields that many devices share
/// (domain, proxy, transport, push kind/topic/environment, app id/version) behind one
/// interned `Arc`.
pub struct Binding {
    /// Contact token and engine binding id.
    pub token: ContactToken,
    /// Own text fields, then the sealed password, then the sealed push tokens.
    own: Box<[u8]>,
    /// End offsets in `own` of the own text fields and of the sealed password.
    ends: [u16; OWN_FIELDS + 1],
    shared: Arc<SharedText>,
    /// SHA-256 of the device secret.
    pub secret_hash: [u8; 32],
    /// Digest of the last PUT body (idempotency).
    pub body_hash: [u8; 16],
    /// Preferred expiry, seconds.
    pub expires: u32,
    /// state (8 bits) | last status (16 bits) << 8 | granted expiry (32 bits) << 24 |
    /// reason (6 bits) << 56 | [`RETIRED`] | [`LIVE`] (bit 63: the entry is a table's
    /// current binding and counted in its per-state counts).
    status: AtomicU64,
    next_at_ms: AtomicU64,
    last_put_ms: AtomicU64,
}

impl Drop for Binding {
    fn drop(&mut self) {
        // The interner's reference and ours are the last two: nobody else uses this text.
        if Arc::strong_count(&self.shared) == 2 {
            SHARED.pin().remove(&*self.shared);
        }
    }
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("token", &self.token)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// A record that cannot become a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The contact token is not 16 hex digits or does not match the binding id.
    #[error("contact token does not match the binding id")]
    Token,
    /// A field is longer than the compact entry can hold (64 KiB in total).
    #[error("device record too large")]
    TooLarge,
    /// A hash column has the wrong length.
    #[error("hash column has the wrong length")]
    Hash,
}

impl Binding {
    /// Builds the in-memory entry of a stored (or about to be stored) device.
    pub fn from_record(r: &DeviceRecord) -> Result<Self, RecordError> {
        Self::from_view(&r.view())
    }

    /// Builds the in-memory entry of a device from its borrowed fields: start-up builds
    /// each binding straight from the page the store read, without an owned record between.
    pub fn from_view(r: &DeviceView<'_>) -> Result<Self, RecordError> {
        let token = ContactToken::parse(r.contact_token).ok_or(RecordError::Token)?;
        if token.0 as i64 != r.binding_id {
            return Err(RecordError::Token);
        }
        fn o(v: Option<&str>) -> &str {
            v.unwrap_or("")
        }
        let own_text = [
            r.device_id,
            r.username,
            o(r.auth_username),
            o(r.display_name),
        ];
        let shared = intern([
            r.domain,
            o(r.outbound_proxy),
            o(r.transport),
            r.push_kind,
            o(r.push_topic),
            o(r.push_env),
            r.app_id,
            r.app_version,
        ])?;
        let len = own_text.iter().map(|f| f.len()).sum::<usize>()
            + r.password_enc.len()
            + r.push_enc.len();
        let mut own = Vec::with_capacity(len);
        let mut ends = [0u16; OWN_FIELDS + 1];
        for (i, f) in own_text
            .iter()
            .map(|t| t.as_bytes())
            .chain([r.password_enc])
            .enumerate()
        {
            own.extend_from_slice(f);
            ends[i] = u16::try_from(own.len()).map_err(|_| RecordError::TooLarge)?;
        }
        own.extend_from_slice(r.push_enc);
        Ok(Self {
            token,
            own: own.into_boxed_slice(),
            ends,
            shared,
            secret_hash: r.secret_hash.try_into().map_err(|_| RecordError::Hash)?,
            body_hash: r.body_hash.try_into().map_err(|_| RecordError::Hash)?,
            expires: u32::try_from(r.expires).unwrap_or(u32::MAX),
            status: AtomicU64::new(pack(Status {
                state: DeviceState::parse(r.state),
                last_status: u16::try_from(r.last_status).unwrap_or(0),
                granted_expires: 0,
                next_at_ms: 0,
                reason: Reason::None,
            })),
            next_at_ms: AtomicU64::new(0),
            last_put_ms: AtomicU64::new(u64::try_from(r.last_put_ms).unwrap_or(0)),
        })
    }

    /// The stored form (for an update that keeps most fields).
    pub fn to_record(&self) -> DeviceRecord {
        let s = |t| self.text(t).to_owned();
        let o = |t| Some(self.text(t).to_owned()).filter(|v| !v.is_empty());
        let st = self.status();
        DeviceRecord {
            device_id: s(Text::DeviceId),
            binding_id: self.token.0 as i64,
            contact_token: self.token.to_string(),
            username: s(Text::Username),
            auth_username: o(Text::AuthUsername),
            password_enc: self.password_sealed().to_vec(),
            domain: s(Text::Domain),
            outbound_proxy: o(Text::OutboundProxy),
            transport: o(Text::Transport),
            display_name: o(Text::DisplayName),
            push_kind: s(Text::PushKind),
            push_enc: self.push_sealed().to_vec(),
            push_topic: o(Text::PushTopic),
            push_env: o(Text::PushEnv),
            app_id: s(Text::AppId),
            app_version: s(Text::AppVersion),
            expires: i64::from(self.expires),
            secret_hash: self.secret_hash.to_vec(),
            body_hash: self.body_hash.to_vec(),
            last_put_ms: self.last_put_ms() as i64,
            state: st.state.as_str().to_owned(),
            last_status: i64::from(st.last_status),
        }
    }

    /// One text field ("" for an absent optional one).
    pub fn text(&self, field: Text) -> &str {
        match field.place() {
            Place::Own(i) => std::str::from_utf8(self.own_range(i))
                .expect("own text fields were copied from strings at their char boundaries"),
            Place::Shared(i) => self.shared.get(i),
        }
    }

    /// Bytes of segment `i` of `own` (`i <= OWN_FIELDS`: a text field or the password).
    fn own_range(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.own[usize::from(start)..usize::from(self.ends[i])]
    }

    /// The device id.
    pub fn device_id(&self) -> &str {
        self.text(Text::DeviceId)
    }

    /// The sealed SIP password.
    pub fn password_sealed(&self) -> &[u8] {
        self.own_range(OWN_FIELDS)
    }

    /// The sealed push tokens (JSON).
    pub fn push_sealed(&self) -> &[u8] {
        &self.own[usize::from(self.ends[OWN_FIELDS])..]
    }

    /// A copy of this binding carrying `push_enc` as its sealed push tokens (a dead token
    /// dropped), with the same registration status.
    pub fn with_push_sealed(&self, push_enc: Vec<u8>) -> Result<Self, RecordError> {
        let mut r = self.to_record();
        r.push_enc = push_enc;
        let b = Self::from_record(&r)?;
        // Not in a table yet: no count moves.
        b.swap_status(self.status());
        Ok(b)
    }

    /// Whether the binding still has a push token (an empty sealed field means its only
    /// token was reported dead).
    pub fn has_push_token(&self) -> bool {
        !self.push_sealed().is_empty()
    }

    /// The registration status.
    pub fn status(&self) -> Status {
        let mut s = unpack(self.status.load(Ordering::Acquire));
        s.next_at_ms = self.next_at_ms.load(Ordering::Acquire);
        s
    }

    /// Records a new registration status, keeping the [`LIVE`] bit; returns the state it
    /// replaced if the entry is live (its table must move its count). Entries in a table
    /// change status through [`BindingTable::set_status`], which does that.
    fn swap_status(&self, s: Status) -> Option<DeviceState> {
        self.next_at_ms.store(s.next_at_ms, Ordering::Release);
        let new = pack(s);
        let old = self
            .status
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                Some(new | (old & (LIVE | RETIRED)))
            })
            // The closure always returns `Some`.
            .unwrap_or_else(|old| old);
        (old & LIVE != 0).then(|| unpack(old).state)
    }

    /// Marks the entry live; returns its state if it was neither live nor retired before.
    fn enter(&self) -> Option<DeviceState> {
        let old = self
            .status
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                (old & (LIVE | RETIRED) == 0).then_some(old | LIVE)
            })
            .ok()?;
        Some(unpack(old).state)
    }

    /// Marks the entry retired (not live, and never again); returns its state if it was
    /// live before.
    fn leave(&self) -> Option<DeviceState> {
        let old = self
            .status
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                Some(old & !LIVE | RETIRED)
            })
            // The closure always returns `Some`.
            .unwrap_or_else(|old| old);
        (old & LIVE != 0).then(|| unpack(old).state)
    }

    /// Last PUT, Unix milliseconds.
    pub fn last_put_ms(&self) -> u64 {
        self.last_put_ms.load(Ordering::Acquire)
    }

    /// Moves the idle clock (a PUT with an unchanged body).
    pub fn touch(&self, now_ms: u64) {
        self.last_put_ms.store(now_ms, Ordering::Release);
    }

    /// Heap bytes owned by this entry beyond its inline size (the shared text, interned
    /// once for many devices, not counted).
    pub fn heap_bytes(&self) -> usize {
        self.own.len()
    }
}

/// The status word's bit for "counted in a table's per-state counts" (see
/// [`BindingTable::count_by_state`]).
const LIVE: u64 = 1 << 63;

/// The status word's bit for "was in a table and left it": such a binding is never counted
/// again (see [`BindingTable::count_by_state`]).
const RETIRED: u64 = 1 << 62;

// The reason has 6 bits below `RETIRED`.
const _: () = assert!(Reason::ALL.len() <= 0x40);

fn pack(s: Status) -> u64 {
    u64::from(s.state as u8)
        | u64::from(s.last_status) << 8
        | u64::from(s.granted_expires) << 24
        | u64::from(s.reason as u8 & 0x3f) << 56
}

fn unpack(v: u64) -> Status {
    Status {
        state: DeviceState::from_u8((v & 0xff) as u8),
        last_status: ((v >> 8) & 0xffff) as u16,
        granted_expires: ((v >> 24) & 0xffff_ffff) as u32,
        next_at_ms: 0,
        reason: Reason::ALL
            .get(((v >> 56) & 0x3f) as usize)
            .copied()
            .unwrap_or(Reason::None),
    }
}

/// A `by_device` key: the binding itself, hashed and compared by its device id, so the map
/// needs no second copy of the id (a boxed string key would cost another heap block per
/// device). `Borrow<str>` lets lookups take a plain `&str`; `Hash` and `Eq` are those of the
/// id, as `Borrow` requires.
struct DeviceKey(Arc<Binding>);

impl std::borrow::Borrow<str> for DeviceKey {
    fn borrow(&self) -> &str {
        self.0.device_id()
    }
}

impl std::hash::Hash for DeviceKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.device_id().hash(state);
    }
}

impl PartialEq for DeviceKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.device_id() == other.0.device_id()
    }
}

impl Eq for DeviceKey {}

/// The two maps; see the module documentation.
///
/// Each papaya entry is its own heap block (key and value); keys are the binding (by device)
/// and the token (by token), so neither map copies the device id.
///
/// The per-state counts for `/metrics` are kept as bindings enter and leave the table and
/// change state, so a scrape reads five numbers instead of walking a million entries.
/// Invariant: `counts[s]` is the number of bindings whose status word has [`LIVE`] set and
/// state `s`, once the operations in flight have finished; every change to either goes
/// through one atomic operation on the word ([`Binding::enter`], [`Binding::leave`],
/// [`Binding::swap_status`]) followed by the matching count changes. A binding is marked
/// live before it can be found in `by_device` and unmarked after it can no longer be, so
/// the live bindings are the entries, and a status the engine writes to a binding that a
/// PUT or DELETE has just taken out of the table moves no count. That needs each binding
/// to enter a table at most once (every caller inserts a binding it has just built): one
/// that left is retired and never counted again, and one inserted twice concurrently with
/// a replacement could otherwise be unmarked while still an entry.
#[derive(Default)]
pub struct BindingTable {
    by_device: papaya::HashMap<DeviceKey, Arc<Binding>>,
    by_token: papaya::HashMap<u64, Arc<Binding>>,
    counts: [AtomicI64; DeviceState::ALL.len()],
}

impl std::fmt::Debug for BindingTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindingTable")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl BindingTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces the device's binding; returns the previous one. `binding` must
    /// be new to the table (see the type's invariant).
    pub fn insert(&self, binding: Arc<Binding>) -> Option<Arc<Binding>> {
        let by_device = self.by_device.pin();
        let by_token = self.by_token.pin();
        let entered = self.enter(&binding);
        debug_assert!(entered, "a binding enters a table once");
        by_token.insert(binding.token.0, binding.clone());
        let old = by_device
            .insert(DeviceKey(binding.clone()), binding.clone())
            .cloned();
        if let Some(old) = &old {
            if old.token != binding.token {
                by_token.remove(&old.token.0);
            }
            if !Arc::ptr_eq(old, &binding) {
                self.leave(old);
            }
        }
        old
    }

    /// Inserts the device's binding only if the device id is not in the table yet.
    pub fn insert_new(&self, binding: Arc<Binding>) -> bool {
        let entered = self.enter(&binding);
        let fresh = self
            .by_device
            .pin()
            .try_insert(DeviceKey(binding.clone()), binding.clone())
            .is_ok();
        if fresh {
            self.by_token.pin().insert(binding.token.0, binding);
        } else if entered {
            self.leave(&binding);
        }
        fresh
    }

    /// Records a binding's new registration status, moving the per-state counts if the
    /// binding is this table's current entry.
    pub fn set_status(&self, binding: &Binding, status: Status) {
        if let Some(old) = binding.swap_status(status) {
            self.moved(Some(old), Some(status.state));
        }
    }

    /// Marks `binding` live and counts it; returns whether it was not live before.
    fn enter(&self, binding: &Binding) -> bool {
        let state = binding.enter();
        self.moved(None, state);
        state.is_some()
    }

    fn leave(&self, binding: &Binding) {
        self.moved(binding.leave(), None);
    }

    fn moved(&self, from: Option<DeviceState>, to: Option<DeviceState>) {
        if from == to {
            return;
        }
        if let Some(from) = from {
            self.counts[from as usize].fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(to) = to {
            self.counts[to as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The binding of a device.
    pub fn get(&self, device_id: &str) -> Option<Arc<Binding>> {
        self.by_device.pin().get(device_id).cloned()
    }

    /// The binding with this Contact token (or engine binding id).
    pub fn by_token(&self, token: ContactToken) -> Option<Arc<Binding>> {
        self.by_token.pin().get(&token.0).cloned()
    }

    /// Replaces `current` with `new` (same device and Contact token) only if `current` is
    /// still the device's binding: a PUT that replaced it meanwhile wins. Returns whether
    /// the replacement happened.
    pub fn replace_if_current(&self, current: &Arc<Binding>, new: Arc<Binding>) -> bool {
        if current.device_id() != new.device_id() || current.token != new.token {
            return false;
        }
        let by_device = self.by_device.pin();
        let entered = self.enter(&new);
        let swapped = matches!(
            by_device.compute(DeviceKey(new.clone()), |entry| match entry {
                Some((_, cur)) if Arc::ptr_eq(cur, current) =>
                    papaya::Operation::Insert(new.clone()),
                _ => papaya::Operation::Abort(()),
            }),
            papaya::Compute::Updated { .. }
        );
        if swapped {
            // A status the engine wrote to the old entry while the new one was built; the
            // engine finds the entry by token, so it writes to the new one from here on.
            self.leave(current);
            self.set_status(&new, current.status());
            self.by_token.pin().insert(new.token.0, new.clone());
        } else if entered {
            self.leave(&new);
        }
        swapped
    }

    /// Bindings that may carry a push token of `kind` (`apns`, `fcm`, `quic`) whose topic
    /// (APNs bundle id) is `topic`, when given. The tokens themselves are sealed, so the
    /// caller opens these few to find the one holding a given token.
    pub fn with_push_kind(&self, kind: &str, topic: Option<&str>) -> Vec<Arc<Binding>> {
        self.by_device
            .pin()
            .values()
            .filter(|b| {
                b.has_push_token()
                    && b.text(Text::PushKind) == kind
                    && topic.is_none_or(|t| b.text(Text::PushTopic) == t)
            })
            .cloned()
            .collect()
    }

    /// Forgets a device; returns its binding.
    pub fn remove(&self, device_id: &str) -> Option<Arc<Binding>> {
        let old = self.by_device.pin().remove(device_id).cloned();
        if let Some(old) = &old {
            self.by_token.pin().remove(&old.token.0);
            self.leave(old);
        }
        old
    }

    /// Number of bindings.
    pub fn len(&self) -> usize {
        self.by_device.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bindings whose last PUT is older than `cutoff_ms` (the idle sweep).
    pub fn idle_before(&self, cutoff_ms: u64) -> Vec<Arc<Binding>> {
        self.by_device
            .pin()
            .values()
            .filter(|b| b.last_put_ms() < cutoff_ms)
            .cloned()
            .collect()
    }

    /// Bindings per state, indexed like [`DeviceState::ALL`] (for `/metrics`): the kept
    /// counts, exact whenever no insert, removal or status change is in flight (one in
    /// flight can be seen half done: one count already moved, the other not yet).
    pub fn count_by_state(&self) -> [usize; 5] {
        self.counts
            .each_ref()
            .map(|c| usize::try_from(c.load(Ordering::Relaxed)).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(id: &str) -> DeviceRecord {
        let token = ContactToken::random();
        DeviceRecord {
            device_id: id.into(),
            binding_id: token.0 as i64,
            contact_token: token.to_string(),
            username: "alice".into(),
            auth_username: None,
            password_enc: vec![1; 40],
            domain: "example.com".into(),
            outbound_proxy: Some("proxy.example.com:5060".into()),
            transport: Some("tcp".into()),
            display_name: None,
            push_kind: "apns".into(),
            push_enc: vec![2; 100],
            push_topic: Some("com.example.app".into()),
            push_env: Some("production".into()),
            app_id: "app".into(),
            app_version: "1.0".into(),
            expires: 600,
            secret_hash: vec![3; 32],
            body_hash: vec![4; 16],
            last_put_ms: 1234,
            state: "registered".into(),
            last_status: 200,
        }
    }

    #[test]
    fn record_round_trips_through_the_compact_entry() {
        let r = record("dev-1");
        let b = Binding::from_record(&r).unwrap();
        assert_eq!(b.to_record(), r);
        assert_eq!(b.text(Text::Domain), "example.com");
        assert_eq!(b.text(Text::AuthUsername), "");
        assert_eq!(b.password_sealed(), &[1; 40][..]);
        assert_eq!(b.push_sealed().len(), 100);
        let mut bad = r.clone();
        bad.binding_id += 1;
        assert_eq!(Binding::from_record(&bad).err(), Some(RecordError::Token));
    }

    #[test]
    fn shared_text_is_interned_once_and_dropped_with_its_last_binding() {
        // A domain no other test uses: the interner is process-wide.
        let mut r = record("i1");
        r.domain = "intern-test.example".into();
        let a = Binding::from_record(&r).unwrap();
        let mut r2 = record("i2");
        r2.domain = "intern-test.example".into();
        let b = Binding::from_record(&r2).unwrap();
        assert!(Arc::ptr_eq(&a.shared, &b.shared));
        assert_eq!(b.text(Text::Domain), "intern-test.example");
        assert_eq!(b.text(Text::DeviceId), "i2");
        r2.app_version = "2.0".into();
        let c = Binding::from_record(&r2).unwrap();
        assert!(!Arc::ptr_eq(&a.shared, &c.shared), "another app version");
        let key = SharedText {
            text: a.shared.text.clone(),
            ends: a.shared.ends,
        };
        assert!(SHARED.pin().contains(&key));
        drop((a, b, c));
        assert!(!SHARED.pin().contains(&key), "the last binding let go");
    }

    #[test]
    fn both_maps_follow_inserts_replacements_and_removals() {
        let t = BindingTable::new();
        let a = Arc::new(Binding::from_record(&record("a")).unwrap());
        assert!(t.insert(a.clone()).is_none());
        assert_eq!(t.by_token(a.token).unwrap().device_id(), "a");
        let a2 = Arc::new(Binding::from_record(&record("a")).unwrap());
        assert!(t.insert(a2.clone()).is_some());
        assert!(t.by_token(a.token).is_none(), "old token is forgotten");
        assert!(t.by_token(a2.token).is_some());
        assert_eq!(t.len(), 1);
        t.set_status(
            &a2,
            Status {
                state: DeviceState::Retrying,
                last_status: 503,
                granted_expires: 0,
                next_at_ms: 99,
                reason: Reason::Status,
            },
        );
        assert_eq!(t.get("a").unwrap().status().reason, Reason::Status);
        assert_eq!(t.get("a").unwrap().status().last_status, 503);
        assert_eq!(t.count_by_state()[DeviceState::Retrying as usize], 1);
        assert_eq!(t.idle_before(2000).len(), 1);
        assert_eq!(t.idle_before(1000).len(), 0);
        assert!(t.remove("a").is_some());
        assert!(t.by_token(a2.token).is_none());
        assert!(t.is_empty());
    }

    fn status_in(state: DeviceState) -> Status {
        Status {
            state,
            last_status: 200,
            granted_expires: 600,
            next_at_ms: 5,
            reason: Reason::UpstreamNotFound,
        }
    }

    /// What `count_by_state` kept, counted the slow way.
    fn walked(t: &BindingTable) -> [usize; 5] {
        let mut counts = [0; 5];
        for b in t.by_device.pin().values() {
            counts[b.status().state as usize] += 1;
        }
        counts
    }

    #[test]
    fn a_status_written_to_a_binding_no_longer_in_the_table_moves_no_count() {
        let t = BindingTable::new();
        let a = Arc::new(Binding::from_record(&record("a")).unwrap());
        t.insert(a.clone());
        assert_eq!(t.count_by_state()[DeviceState::Registered as usize], 1);
        t.set_status(&a, status_in(DeviceState::Failed));
        assert_eq!(t.count_by_state(), [0, 0, 0, 1, 0]);
        // A PUT replaced it: the engine's late write to the old entry counts for nothing.
        let a2 = Arc::new(Binding::from_record(&record("a")).unwrap());
        t.insert(a2.clone());
        t.set_status(&a, status_in(DeviceState::Retrying));
        assert_eq!(t.count_by_state(), walked(&t));
        assert_eq!(t.count_by_state()[DeviceState::Registered as usize], 1);
        assert_eq!(t.count_by_state(), [0, 1, 0, 0, 0]);
        // A dead token dropped: the replacement carries the state, the old one leaves.
        t.set_status(&a2, status_in(DeviceState::Retrying));
        let a3 = Arc::new(a2.with_push_sealed(Vec::new()).unwrap());
        assert!(t.replace_if_current(&a2, a3.clone()));
        assert_eq!(t.count_by_state(), [0, 0, 1, 0, 0]);
        assert_eq!(a3.status().state, DeviceState::Retrying);
        t.set_status(&a2, status_in(DeviceState::Failed));
        assert_eq!(t.count_by_state(), [0, 0, 1, 0, 0]);
        // DELETE, then the engine's last event.
        t.remove("a");
        t.set_status(&a3, status_in(DeviceState::Registered));
        assert_eq!(t.count_by_state(), [0; 5]);
        // The live bit never shows in the status.
        assert_eq!(
            a3.status(),
            Status {
                next_at_ms: 5,
                ..status_in(DeviceState::Registered)
            }
        );
    }

    #[test]
    fn kept_counts_match_a_walk_after_concurrent_changes() {
        let t = BindingTable::new();
        // Few devices, so that the threads' operations on the same device overlap. Every
        // insert takes a binding never inserted before (as the gateway's callers do), built
        // ahead so that the loop is all table operations.
        const DEVICES: u64 = 4;
        const OPS: usize = 20_000;
        std::thread::scope(|s| {
            for w in 0..4u64 {
                let t = &t;
                s.spawn(move || {
                    let records: Vec<DeviceRecord> =
                        (0..DEVICES).map(|d| record(&format!("d{d}"))).collect();
                    let mut fresh: Vec<Arc<Binding>> = (0..OPS)
                        .map(|i| Arc::new(Binding::from_record(&records[i % 4]).unwrap()))
                        .collect();
                    let mut x = 0x9e37_79b9_7f4a_7c15 ^ (w + 1);
                    for _ in 0..OPS {
                        // xorshift64
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let Some(mine) = fresh.pop() else { break };
                        let id = mine.device_id().to_owned();
                        let state = DeviceState::ALL[(x >> 8) as usize % 5];
                        match (x >> 16) % 6 {
                            0 => {
                                t.insert(mine);
                            }
                            1 => {
                                t.insert_new(mine);
                            }
                            2 => {
                                t.remove(&id);
                            }
                            3 => {
                                if let Some(b) = t.get(&id) {
                                    let new = Arc::new(b.with_push_sealed(Vec::new()).unwrap());
                                    t.replace_if_current(&b, new);
                                }
                            }
                            _ => {
                                if let Some(b) = t.get(&id) {
                                    t.set_status(&b, status_in(state));
                                }
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(t.count_by_state(), walked(&t));
        assert_eq!(t.count_by_state().iter().sum::<usize>(), t.len());
    }
}
