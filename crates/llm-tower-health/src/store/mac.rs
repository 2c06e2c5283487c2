//! Signing events with `health_store.secret`: HMAC-SHA256 under the secret, over the
//! prefix, a newline and the event's bytes (`wire.rs` says where the MAC goes). The prefix
//! is in it so that an event cannot be replayed to another fleet sharing the secret.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The length of a MAC, in bytes.
pub(super) const MAC_LEN: usize = 32;

/// The secret, ready to sign and verify for one prefix.
#[derive(Clone)]
pub(super) struct Signer {
    /// Keyed, and the prefix hashed in already: each event clones it, and the secret's
    /// padded blocks are not hashed again for every event.
    keyed: Hmac<Sha256>,
}

impl Signer {
    pub(super) fn new(secret: &[u8], prefix: &str) -> Self {
        let mut keyed = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        keyed.update(prefix.as_bytes());
        keyed.update(b"\n");
        Self { keyed }
    }

    /// The MAC of `body`.
    pub(super) fn sign(&self, body: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.keyed.clone();
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// Whether `mac` is the MAC of `body`, compared in constant time: how much of a forged
    /// MAC matched is not told by how long it took to refuse it.
    pub(super) fn verify(&self, body: &[u8], mac: &[u8]) -> bool {
        let mut expected = self.keyed.clone();
        expected.update(body);
        expected.verify_slice(mac).is_ok()
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn it_is_hmac_sha256_over_the_prefix_a_newline_and_the_body() {
        // Computed apart: Python's `hmac.new(b"Jefe", b"llm-tower\n" + body, sha256)`.
        let mac = Signer::new(b"Jefe", "llm-tower").sign(br#"{"event":"restored"}"#);
        assert_eq!(
            super::super::wire::hex(&mac),
            "b897d39dca3d33d432962dd222abff55fad939b3e2c6d3ab1c067c1ac2093a6c"
        );
    }

    #[test]
    fn only_the_same_secret_prefix_and_body_verify() {
        let signer = Signer::new(SECRET, "fleet");
        let mac = signer.sign(b"{}");
        assert!(signer.verify(b"{}", &mac));
        assert!(!signer.verify(b"{ }", &mac));
        assert!(!signer.verify(b"{}", &mac[..31]));
        assert!(!Signer::new(SECRET, "other").verify(b"{}", &mac));
        assert!(!Signer::new(b"0123456789abcdef0123456789abcdeF", "fleet").verify(b"{}", &mac));
        assert_eq!(format!("{signer:?}"), "Signer(***)");
    }
}
