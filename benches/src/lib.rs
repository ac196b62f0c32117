//! Shared fixtures for Vigil's criterion benchmarks.
//!
//! The SIP fixtures are files in `benches/fixtures/` (exact bytes, CRLF line ends) so that the
//! benchmarks, the fuzz corpus and a human with `sipp` or `nc` all see the same messages.

/// A typical REGISTER (~780 bytes) as a phone or Vigil sends it after a 401: TCP Via with
/// rport, From/To, Contact with `expires`, `+sip.instance` and `reg-id`, and a digest
/// Authorization header.
pub const REGISTER: &[u8] = include_bytes!("../fixtures/register.sip");

/// A typical INVITE with two Vias, Record-Route and an SDP offer (~870 bytes).
pub const INVITE: &[u8] = include_bytes!("../fixtures/invite.sip");

pub mod reg;
pub mod vigil;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_parse_with_vigil() {
        for raw in [REGISTER, INVITE] {
            let msg = vigil_proto::msg::Message::parse(bytes::Bytes::from_static(raw))
                .expect("fixture parses");
            assert!(msg.is_request());
            assert!(msg.top_via().expect("via").branch().is_some());
            msg.cseq().expect("cseq");
            msg.call_id().expect("call-id");
        }
    }
}
