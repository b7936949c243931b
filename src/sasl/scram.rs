//! SCRAM-SHA-1 and SCRAM-SHA-256 clients, with and without channel binding (RFC 5802,
//! RFC 7677; `tls-exporter` RFC 9266, `tls-server-end-point` RFC 5929): the message
//! grammar, SASLprep, the key derivation, and the check of the server signature.
//!
//! It neither draws the client nonce nor computes channel-binding data: both are inputs
//! (the transport owns the TLS connection, [`ClientNonce::random`] draws a nonce), so an
//! exchange is a pure function of its inputs and tests replay RFC transcripts byte for
//! byte.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::digest::Digest;
use hmac::digest::core_api::BlockSizeUser;
use hmac::{Mac, SimpleHmac};

use super::gs2::{self, CbFlag};
use super::{Mechanism, SaslError, printable, require_nonempty};
use crate::secret::{Piece, Secret, assemble};

/// Accepted SCRAM iteration counts, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IterationBounds {
    /// Below this, a captured exchange is too cheap to brute-force offline. RFC 7677
    /// asks for at least 4096.
    pub min: u32,
    /// Above this, a server (or an attacker in its place) makes the client spin: PBKDF2
    /// runs on the client before the server proves anything.
    pub max: u32,
}

/// The bounds used unless an account sets others.
pub const DEFAULT_ITERATION_BOUNDS: IterationBounds = IterationBounds {
    min: 4096,
    max: 1_000_000,
};

/// The hash function of a SCRAM family member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

/// Which TLS channel binding the data belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelBindingKind {
    /// RFC 9266: 32 bytes of `EXPORTER-Channel-Binding` keying material, empty context.
    TlsExporter,
    /// RFC 5929: the hash of the server's end-entity certificate.
    TlsServerEndPoint,
}

impl ChannelBindingKind {
    /// The channel-binding type name, as in the GS2 header (`p=tls-exporter`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelBindingKind::TlsExporter => "tls-exporter",
            ChannelBindingKind::TlsServerEndPoint => "tls-server-end-point",
        }
    }
}

/// Channel-binding data of the TLS connection the exchange runs over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelBinding {
    pub kind: ChannelBindingKind,
    /// Exporter output or certificate hash; kept in a [`Secret`] because the exporter
    /// value is derived from the session's keys.
    pub data: Secret<Vec<u8>>,
}

impl ChannelBinding {
    pub fn new(kind: ChannelBindingKind, data: Vec<u8>) -> Self {
        ChannelBinding {
            kind,
            data: Secret::new(data),
        }
    }
}

/// The client's channel-binding stance, which decides the GS2 flag and the mechanism name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// `n,,`: this client has no channel-binding data for this connection.
    Unsupported,
    /// `y,,`: this client could bind, but the server did not advertise a `-PLUS`
    /// mechanism. A server that does support binding then fails the exchange, which
    /// detects an attacker who removed `-PLUS` from the mechanism list.
    SupportedButNotAdvertised,
    /// `p=<type>,,` and the `-PLUS` mechanism name: bind to this channel.
    Plus(ChannelBinding),
}

impl Binding {
    /// The rule of RFC 5802 section 6: bind whenever both sides can; a client that could
    /// bind never sends `n`.
    pub fn choose(available: Option<ChannelBinding>, server_offers_plus: bool) -> Binding {
        match available {
            Some(cb) if server_offers_plus => Binding::Plus(cb),
            Some(_) => Binding::SupportedButNotAdvertised,
            None => Binding::Unsupported,
        }
    }

    fn flag(&self) -> CbFlag<'_> {
        match self {
            Binding::Unsupported => CbFlag::No,
            Binding::SupportedButNotAdvertised => CbFlag::Yes,
            Binding::Plus(cb) => CbFlag::Plus(cb.kind.as_str()),
        }
    }
}

/// A client nonce: printable ASCII without `,`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientNonce(String);

impl ClientNonce {
    /// Checks a nonce chosen by the caller (tests use the RFC's fixed nonces).
    pub fn new(nonce: impl Into<String>) -> Result<Self, SaslError> {
        let nonce = nonce.into();
        if nonce.is_empty() || !nonce.bytes().all(is_nonce_byte) {
            return Err(SaslError::UnusableCredential {
                mechanism: "SCRAM",
                what: "client nonce",
                reason: "it must be non-empty printable ASCII without commas",
            });
        }
        Ok(ClientNonce(nonce))
    }

    /// 24 bytes from the operating system's random source, base64-encoded (32 characters).
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes)?;
        Ok(ClientNonce(B64.encode(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_nonce_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

/// SASLprep (RFC 4013) with stored-string rules (unassigned code points refused).
///
/// The `stringprep` crate's error names the offending character, which may be part of
/// a password: it is dropped here, and only `what` reaches the message.
pub fn saslprep(what: &'static str, s: &str) -> Result<Secret<String>, SaslError> {
    match stringprep::saslprep(s) {
        Ok(prepared) => Ok(Secret::new(prepared.into_owned())),
        Err(_) => Err(SaslError::SaslPrepFailed { what }),
    }
}

enum State {
    /// Waiting for the caller to ask for the client-first message.
    Start { password: Secret<String> },
    /// Client-first sent; waiting for `r=...,s=...,i=...`.
    ExpectServerFirst { password: Secret<String> },
    /// Client-final sent; waiting for `v=...` (or `e=...`).
    ExpectServerFinal {
        server_key: Secret<Vec<u8>>,
        auth_message: String,
    },
    /// The server signature verified.
    Complete,
    /// An error was returned; the exchange cannot go on.
    Failed,
}

/// A SCRAM client exchange.
pub struct Scram {
    hash: ScramHash,
    binding: Binding,
    bounds: IterationBounds,
    gs2_header: String,
    client_first_bare: String,
    nonce: ClientNonce,
    state: State,
}

impl Scram {
    /// The mechanism name follows from `hash` and `binding` (`-PLUS` for
    /// [`Binding::Plus`]). Username, password and authzid are SASLprepped here; a
    /// credential SASLprep refuses fails now, before anything is sent.
    pub fn new(
        hash: ScramHash,
        username: &str,
        password: Secret<String>,
        authzid: Option<&str>,
        binding: Binding,
        nonce: ClientNonce,
    ) -> Result<Self, SaslError> {
        let mechanism = mechanism_name(hash, &binding);
        let username = saslprep("username", username)?;
        require_nonempty(mechanism, "username", username.expose())?;
        let password = saslprep("password", password.expose())?;
        require_nonempty(mechanism, "password", password.expose())?;
        let authzid = match authzid {
            Some(a) => Some(saslprep("authorization identity", a)?),
            None => None,
        };
        let gs2_header = gs2::header(
            binding.flag(),
            authzid.as_ref().map(|a| a.expose().as_str()),
        );
        let client_first_bare = format!(
            "n={},r={}",
            gs2::escape_saslname(username.expose()),
            nonce.as_str()
        );
        Ok(Scram {
            hash,
            binding,
            bounds: DEFAULT_ITERATION_BOUNDS,
            gs2_header,
            client_first_bare,
            nonce,
            state: State::Start { password },
        })
    }

    /// Replaces [`DEFAULT_ITERATION_BOUNDS`].
    pub fn with_iteration_bounds(mut self, bounds: IterationBounds) -> Self {
        self.bounds = bounds;
        self
    }

    fn mechanism(&self) -> &'static str {
        mechanism_name(self.hash, &self.binding)
    }

    fn malformed(&self, reason: &'static str) -> SaslError {
        SaslError::MalformedServerMessage {
            mechanism: self.mechanism(),
            reason,
        }
    }

    fn answer_server_first(
        &mut self,
        password: Secret<String>,
        challenge: &[u8],
    ) -> Result<Secret<Vec<u8>>, SaslError> {
        let mechanism = self.mechanism();
        let server_first = std::str::from_utf8(challenge)
            .map_err(|_| self.malformed("server-first message is not UTF-8"))?;
        if let Some(value) = server_first.strip_prefix("e=") {
            return Err(SaslError::ServerError {
                mechanism,
                value: printable(value.split(',').next().unwrap_or_default()),
            });
        }
        if server_first.starts_with("v=") {
            return Err(SaslError::ServerFinalTooEarly { mechanism });
        }
        let mut attrs = server_first.split(',');
        let mut next = attrs.next().unwrap_or_default();
        if next.starts_with("m=") {
            return Err(SaslError::UnsupportedMandatoryExtension { mechanism });
        }
        let nonce = next
            .strip_prefix("r=")
            .ok_or_else(|| self.malformed("server-first message does not start with r="))?;
        if !nonce.starts_with(self.nonce.as_str()) || nonce.len() == self.nonce.as_str().len() {
            return Err(SaslError::NonceNotExtended { mechanism });
        }
        if !nonce.bytes().all(is_nonce_byte) {
            return Err(self.malformed("nonce has characters outside printable ASCII"));
        }
        next = attrs.next().unwrap_or_default();
        let salt = next
            .strip_prefix("s=")
            .ok_or_else(|| self.malformed("salt s= missing"))?;
        let salt = B64
            .decode(salt)
            .map_err(|_| self.malformed("salt is not base64"))?;
        if salt.is_empty() {
            return Err(self.malformed("salt is empty"));
        }
        next = attrs.next().unwrap_or_default();
        let count = next
            .strip_prefix("i=")
            .ok_or_else(|| self.malformed("iteration count i= missing"))?;
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.malformed("iteration count is not a number"));
        }
        // Digits only: the parse fails only on overflow, which is out of bounds too.
        let count: u64 = count.parse().unwrap_or(u64::MAX);
        if count < u64::from(self.bounds.min) || count > u64::from(self.bounds.max) {
            return Err(SaslError::IterationCountOutOfBounds {
                mechanism,
                count,
                min: self.bounds.min,
                max: self.bounds.max,
            });
        }
        // Any further attributes are extensions, which RFC 5802 says to ignore.

        let mut cbind_input = self.gs2_header.as_bytes().to_vec();
        if let Binding::Plus(cb) = &self.binding {
            cbind_input.extend_from_slice(cb.data.expose());
        }
        let cbind_input = Secret::new(cbind_input);
        let without_proof = format!("c={},r={nonce}", B64.encode(cbind_input.expose()));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let iterations = count as u32; // within bounds, which are u32
        let keys = match self.hash {
            ScramHash::Sha1 => derive::<sha1::Sha1>(&password, &salt, iterations, &auth_message),
            ScramHash::Sha256 => {
                derive::<sha2::Sha256>(&password, &salt, iterations, &auth_message)
            }
        };
        // The proof's base64 goes straight into a buffer of the final size.
        let response = assemble(&[
            Piece::Raw(without_proof.as_bytes()),
            Piece::Raw(b",p="),
            Piece::Base64(keys.proof.expose()),
        ]);
        self.state = State::ExpectServerFinal {
            server_key: keys.server_key,
            auth_message,
        };
        Ok(response)
    }

    fn check_server_final(
        &mut self,
        server_key: Secret<Vec<u8>>,
        auth_message: &str,
        challenge: &[u8],
    ) -> Result<Secret<Vec<u8>>, SaslError> {
        let mechanism = self.mechanism();
        let server_final = std::str::from_utf8(challenge)
            .map_err(|_| self.malformed("server-final message is not UTF-8"))?;
        let first = server_final.split(',').next().unwrap_or_default();
        if let Some(value) = first.strip_prefix("e=") {
            return Err(SaslError::ServerError {
                mechanism,
                value: printable(value),
            });
        }
        let signature = first
            .strip_prefix("v=")
            .ok_or_else(|| self.malformed("server-final message has neither v= nor e="))?;
        let signature = B64
            .decode(signature)
            .map_err(|_| self.malformed("server signature is not base64"))?;
        let verified = match self.hash {
            ScramHash::Sha1 => {
                verify::<sha1::Sha1>(server_key.expose(), auth_message.as_bytes(), &signature)
            }
            ScramHash::Sha256 => {
                verify::<sha2::Sha256>(server_key.expose(), auth_message.as_bytes(), &signature)
            }
        };
        if !verified {
            return Err(SaslError::ServerSignatureMismatch { mechanism });
        }
        self.state = State::Complete;
        Ok(Secret::new(Vec::new()))
    }
}

fn mechanism_name(hash: ScramHash, binding: &Binding) -> &'static str {
    match (hash, matches!(binding, Binding::Plus(_))) {
        (ScramHash::Sha1, false) => "SCRAM-SHA-1",
        (ScramHash::Sha1, true) => "SCRAM-SHA-1-PLUS",
        (ScramHash::Sha256, false) => "SCRAM-SHA-256",
        (ScramHash::Sha256, true) => "SCRAM-SHA-256-PLUS",
    }
}

struct Keys {
    proof: Secret<Vec<u8>>,
    server_key: Secret<Vec<u8>>,
}

fn hmac<D: Digest + BlockSizeUser>(key: &[u8], msg: &[u8]) -> Secret<Vec<u8>> {
    let mut mac = <SimpleHmac<D> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    Secret::new(mac.finalize().into_bytes().to_vec())
}

/// RFC 5802 section 3: SaltedPassword, ClientKey, StoredKey, ClientSignature,
/// ClientProof and ServerKey.
fn derive<D: Digest + BlockSizeUser + Clone + Sync>(
    password: &Secret<String>,
    salt: &[u8],
    iterations: u32,
    auth_message: &str,
) -> Keys {
    // Secret gives no mutable access: fill the buffer, then move it (without copying)
    // into the wrapper that wipes it.
    let mut buf = vec![0u8; <D as Digest>::output_size()];
    pbkdf2::pbkdf2::<SimpleHmac<D>>(password.expose().as_bytes(), salt, iterations, &mut buf)
        .expect("HMAC takes any key length");
    let salted = Secret::new(buf);
    let client_key = hmac::<D>(salted.expose(), b"Client Key");
    let stored_key = Secret::new(D::digest(client_key.expose()).to_vec());
    let client_signature = hmac::<D>(stored_key.expose(), auth_message.as_bytes());
    let proof = client_key
        .expose()
        .iter()
        .zip(client_signature.expose())
        .map(|(k, s)| k ^ s)
        .collect();
    Keys {
        proof: Secret::new(proof),
        server_key: hmac::<D>(salted.expose(), b"Server Key"),
    }
}

/// Constant-time check of the server signature.
fn verify<D: Digest + BlockSizeUser>(server_key: &[u8], auth_message: &[u8], sig: &[u8]) -> bool {
    let mut mac =
        <SimpleHmac<D> as Mac>::new_from_slice(server_key).expect("HMAC takes any key length");
    mac.update(auth_message);
    mac.verify_slice(sig).is_ok()
}

impl Mechanism for Scram {
    fn name(&self) -> &'static str {
        self.mechanism()
    }

    fn initial_response(&mut self) -> Result<Option<Secret<Vec<u8>>>, SaslError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Start { password } => {
                self.state = State::ExpectServerFirst { password };
                let first = format!("{}{}", self.gs2_header, self.client_first_bare);
                Ok(Some(Secret::new(first.into_bytes())))
            }
            other => {
                self.state = other;
                Err(SaslError::UnexpectedChallenge {
                    mechanism: self.mechanism(),
                })
            }
        }
    }

    fn step(&mut self, challenge: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        // Every error leaves the state at Failed: a refused exchange cannot be resumed.
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Start { .. } | State::Failed => Err(SaslError::UnexpectedChallenge {
                mechanism: self.mechanism(),
            }),
            State::ExpectServerFirst { password } => self.answer_server_first(password, challenge),
            State::ExpectServerFinal {
                server_key,
                auth_message,
            } => self.check_server_final(server_key, &auth_message, challenge),
            State::Complete => {
                self.state = State::Complete;
                Err(SaslError::ChallengeAfterCompletion {
                    mechanism: self.mechanism(),
                })
            }
        }
    }

    fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scram(hash: ScramHash, password: &str, binding: Binding, nonce: &str) -> Scram {
        Scram::new(
            hash,
            "user",
            Secret::new(password.to_string()),
            None,
            binding,
            ClientNonce::new(nonce).unwrap(),
        )
        .unwrap()
    }

    fn text(s: Secret<Vec<u8>>) -> String {
        String::from_utf8(s.expose().clone()).unwrap()
    }

    const SHA1_NONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";
    const SHA1_SERVER_FIRST: &str =
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    const SHA1_CLIENT_FINAL: &str =
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
    const SHA1_SERVER_FINAL: &str = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";

    const SHA256_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SHA256_SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const SHA256_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SHA256_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    /// Runs a whole exchange and checks every client message byte for byte.
    fn check(
        mut m: Scram,
        client_first: &str,
        server_first: &str,
        client_final: &str,
        server_final: &str,
    ) {
        assert_eq!(text(m.initial_response().unwrap().unwrap()), client_first);
        assert_eq!(text(m.step(server_first.as_bytes()).unwrap()), client_final);
        assert!(!m.is_complete());
        assert_eq!(m.step(server_final.as_bytes()).unwrap().expose(), b"");
        assert!(m.is_complete());
    }

    /// A mechanism that has sent its client-final message, ready for the server-final one.
    fn at_server_final(hash: ScramHash) -> Scram {
        let (pw, nonce, first) = match hash {
            ScramHash::Sha1 => ("pencil", SHA1_NONCE, SHA1_SERVER_FIRST),
            ScramHash::Sha256 => ("pencil", SHA256_NONCE, SHA256_SERVER_FIRST),
        };
        let mut m = scram(hash, pw, Binding::Unsupported, nonce);
        m.initial_response().unwrap();
        m.step(first.as_bytes()).unwrap();
        m
    }

    #[test]
    fn rfc5802_scram_sha1_test_vector() {
        let m = scram(ScramHash::Sha1, "pencil", Binding::Unsupported, SHA1_NONCE);
        assert_eq!(m.name(), "SCRAM-SHA-1");
        check(
            m,
            "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            SHA1_SERVER_FIRST,
            SHA1_CLIENT_FINAL,
            SHA1_SERVER_FINAL,
        );
    }

    #[test]
    fn rfc7677_scram_sha256_test_vector() {
        let m = scram(
            ScramHash::Sha256,
            "pencil",
            Binding::Unsupported,
            SHA256_NONCE,
        );
        assert_eq!(m.name(), "SCRAM-SHA-256");
        check(
            m,
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            SHA256_SERVER_FIRST,
            SHA256_CLIENT_FINAL,
            SHA256_SERVER_FINAL,
        );
    }

    #[test]
    fn password_is_saslprepped_before_hashing() {
        // U+00AD SOFT HYPHEN maps to nothing, so "pen\u{AD}cil" derives the same keys.
        let m = scram(
            ScramHash::Sha256,
            "pen\u{00AD}cil",
            Binding::Unsupported,
            SHA256_NONCE,
        );
        check(
            m,
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            SHA256_SERVER_FIRST,
            SHA256_CLIENT_FINAL,
            SHA256_SERVER_FINAL,
        );
    }

    #[test]
    fn wrong_server_signature_refused() {
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            let mut m = at_server_final(hash);
            // The other vector's signature: valid base64, wrong value (and length).
            let wrong = match hash {
                ScramHash::Sha1 => SHA256_SERVER_FINAL,
                ScramHash::Sha256 => SHA1_SERVER_FINAL,
            };
            assert!(matches!(
                m.step(wrong.as_bytes()),
                Err(SaslError::ServerSignatureMismatch { .. })
            ));
            assert!(!m.is_complete());
        }
        // Same length, one bit off.
        let mut m = at_server_final(ScramHash::Sha256);
        let mut sig = B64.decode(&SHA256_SERVER_FINAL[2..]).unwrap();
        sig[0] ^= 1;
        let bad = format!("v={}", B64.encode(sig));
        assert_eq!(
            m.step(bad.as_bytes()).unwrap_err(),
            SaslError::ServerSignatureMismatch {
                mechanism: "SCRAM-SHA-256"
            }
        );
        assert!(!m.is_complete());
        // And the mechanism stays failed: the right signature afterwards is not accepted.
        assert!(m.step(SHA256_SERVER_FINAL.as_bytes()).is_err());
        assert!(!m.is_complete());
    }

    #[test]
    fn server_error_value_refused() {
        let mut m = at_server_final(ScramHash::Sha256);
        assert_eq!(
            m.step(b"e=invalid-proof").unwrap_err(),
            SaslError::ServerError {
                mechanism: "SCRAM-SHA-256",
                value: "invalid-proof".into()
            }
        );
        assert!(!m.is_complete());
        // An e= in place of the server-first message is a failure too.
        let mut m = scram(ScramHash::Sha1, "pencil", Binding::Unsupported, SHA1_NONCE);
        m.initial_response().unwrap();
        assert!(matches!(
            m.step(b"e=unknown-user"),
            Err(SaslError::ServerError { value, .. }) if value == "unknown-user"
        ));
    }

    #[test]
    fn server_error_value_is_made_printable() {
        let mut m = at_server_final(ScramHash::Sha1);
        let err = m.step(b"e=bad\x1b[31m").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the server refused the SCRAM-SHA-1 exchange: bad?[31m"
        );
    }

    #[test]
    fn nonce_not_extending_ours_refused() {
        for first in [
            // Another client's nonce.
            "r=XXXX+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            // Our nonce, not extended.
            "r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096",
            // Our nonce, truncated.
            "r=fyko+d2lbb,s=QSXCR+Q6sek8bf92,i=4096",
        ] {
            let mut m = scram(ScramHash::Sha1, "pencil", Binding::Unsupported, SHA1_NONCE);
            m.initial_response().unwrap();
            assert_eq!(
                m.step(first.as_bytes()).unwrap_err(),
                SaslError::NonceNotExtended {
                    mechanism: "SCRAM-SHA-1"
                },
                "{first}"
            );
        }
    }

    #[test]
    fn iteration_count_1_and_10_9_refused() {
        for (count, expected) in [
            ("1", 1u64),
            ("4095", 4095),
            ("1000000000", 1_000_000_000),
            ("99999999999999999999999", u64::MAX),
        ] {
            let mut m = scram(
                ScramHash::Sha256,
                "pencil",
                Binding::Unsupported,
                SHA256_NONCE,
            );
            m.initial_response().unwrap();
            let first = SHA256_SERVER_FIRST.replace("i=4096", &format!("i={count}"));
            assert_eq!(
                m.step(first.as_bytes()).unwrap_err(),
                SaslError::IterationCountOutOfBounds {
                    mechanism: "SCRAM-SHA-256",
                    count: expected,
                    min: 4096,
                    max: 1_000_000
                }
            );
        }
    }

    #[test]
    fn iteration_bounds_are_configurable() {
        let mut m = scram(
            ScramHash::Sha256,
            "pencil",
            Binding::Unsupported,
            SHA256_NONCE,
        )
        .with_iteration_bounds(IterationBounds {
            min: 10_000,
            max: 20_000,
        });
        m.initial_response().unwrap();
        assert!(matches!(
            m.step(SHA256_SERVER_FIRST.as_bytes()),
            Err(SaslError::IterationCountOutOfBounds {
                count: 4096,
                min: 10_000,
                ..
            })
        ));
    }

    #[test]
    fn server_final_before_client_final_refused() {
        let mut m = scram(
            ScramHash::Sha256,
            "pencil",
            Binding::Unsupported,
            SHA256_NONCE,
        );
        m.initial_response().unwrap();
        assert_eq!(
            m.step(SHA256_SERVER_FINAL.as_bytes()).unwrap_err(),
            SaslError::ServerFinalTooEarly {
                mechanism: "SCRAM-SHA-256"
            }
        );
        assert!(!m.is_complete());
    }

    #[test]
    fn challenge_before_client_first_and_after_completion_refused() {
        let mut m = scram(
            ScramHash::Sha256,
            "pencil",
            Binding::Unsupported,
            SHA256_NONCE,
        );
        assert!(matches!(
            m.step(SHA256_SERVER_FIRST.as_bytes()),
            Err(SaslError::UnexpectedChallenge { .. })
        ));
        let mut m = at_server_final(ScramHash::Sha256);
        m.step(SHA256_SERVER_FINAL.as_bytes()).unwrap();
        assert!(matches!(
            m.step(b""),
            Err(SaslError::ChallengeAfterCompletion { .. })
        ));
        assert!(m.is_complete());
    }

    #[test]
    fn malformed_server_first_messages_refused() {
        for (first, expected) in [
            ("s=QSXCR+Q6sek8bf92,i=4096", "MalformedServerMessage"),
            (
                "m=ext,r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=4096",
                "UnsupportedMandatoryExtension",
            ),
            (
                "r=fyko+d2lbbFgONRv9qkxdawLx,i=4096",
                "MalformedServerMessage",
            ),
            (
                "r=fyko+d2lbbFgONRv9qkxdawLx,s=!!!,i=4096",
                "MalformedServerMessage",
            ),
            (
                "r=fyko+d2lbbFgONRv9qkxdawLx,s=,i=4096",
                "MalformedServerMessage",
            ),
            (
                "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92",
                "MalformedServerMessage",
            ),
            (
                "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=-1",
                "MalformedServerMessage",
            ),
            (
                "r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=",
                "MalformedServerMessage",
            ),
            (
                "r=fyko+d2lbbFgONRv9qkxdawL\u{e9},s=QSXCR+Q6sek8bf92,i=4096",
                "MalformedServerMessage",
            ),
            ("", "MalformedServerMessage"),
        ] {
            let mut m = scram(ScramHash::Sha1, "pencil", Binding::Unsupported, SHA1_NONCE);
            m.initial_response().unwrap();
            let err = m.step(first.as_bytes()).unwrap_err();
            assert!(format!("{err:?}").starts_with(expected), "{first}: {err:?}");
        }
        let mut m = scram(ScramHash::Sha1, "pencil", Binding::Unsupported, SHA1_NONCE);
        m.initial_response().unwrap();
        assert!(matches!(
            m.step(b"r=\xff"),
            Err(SaslError::MalformedServerMessage { .. })
        ));
    }

    #[test]
    fn server_first_extensions_after_iteration_count_are_ignored() {
        let mut m = scram(ScramHash::Sha1, "pencil", Binding::Unsupported, SHA1_NONCE);
        m.initial_response().unwrap();
        let first = format!("{SHA1_SERVER_FIRST},x=extension");
        // The proof changes (the AuthMessage includes the extension), but it is accepted.
        assert!(m.step(first.as_bytes()).is_ok());
    }

    #[test]
    fn malformed_server_final_refused() {
        for last in ["", "v=!!!", "r=abc", "x=1"] {
            let mut m = at_server_final(ScramHash::Sha1);
            assert!(
                matches!(
                    m.step(last.as_bytes()),
                    Err(SaslError::MalformedServerMessage { .. })
                ),
                "{last}"
            );
            assert!(!m.is_complete());
        }
    }

    #[test]
    fn rfc5802_username_escaping_and_authzid() {
        let mut m = Scram::new(
            ScramHash::Sha256,
            "us,er=x",
            Secret::new("pencil".into()),
            Some("ad=min,x"),
            Binding::Unsupported,
            ClientNonce::new("abc").unwrap(),
        )
        .unwrap();
        assert_eq!(
            text(m.initial_response().unwrap().unwrap()),
            "n,a=ad=3Dmin=2Cx,n=us=2Cer=3Dx,r=abc"
        );
        let mut m2 = m;
        let reply = text(m2.step(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4096").unwrap());
        // c= carries the whole GS2 header, authzid included.
        assert!(reply.starts_with(&format!(
            "c={},r=abcdef,p=",
            B64.encode("n,a=ad=3Dmin=2Cx,")
        )));
    }

    #[test]
    fn rfc5802_y_flag_when_server_did_not_advertise_plus() {
        let mut m = scram(
            ScramHash::Sha256,
            "pencil",
            Binding::SupportedButNotAdvertised,
            SHA256_NONCE,
        );
        assert_eq!(m.name(), "SCRAM-SHA-256");
        assert_eq!(
            text(m.initial_response().unwrap().unwrap()),
            "y,,n=user,r=rOprNGfwEbeRWgbNEkqO"
        );
        let reply = text(m.step(SHA256_SERVER_FIRST.as_bytes()).unwrap());
        assert!(reply.starts_with("c=eSws,r="), "{reply}");
    }

    #[test]
    fn plus_variant_binds_the_channel_data() {
        let data = vec![0xAB; 32];
        let mut m = scram(
            ScramHash::Sha256,
            "pencil",
            Binding::Plus(ChannelBinding::new(
                ChannelBindingKind::TlsExporter,
                data.clone(),
            )),
            SHA256_NONCE,
        );
        assert_eq!(m.name(), "SCRAM-SHA-256-PLUS");
        assert_eq!(
            text(m.initial_response().unwrap().unwrap()),
            "p=tls-exporter,,n=user,r=rOprNGfwEbeRWgbNEkqO"
        );
        let reply = text(m.step(SHA256_SERVER_FIRST.as_bytes()).unwrap());
        let mut cbind = b"p=tls-exporter,,".to_vec();
        cbind.extend_from_slice(&data);
        assert!(
            reply.starts_with(&format!("c={},r=", B64.encode(&cbind))),
            "{reply}"
        );

        let mut m = scram(
            ScramHash::Sha1,
            "pencil",
            Binding::Plus(ChannelBinding::new(
                ChannelBindingKind::TlsServerEndPoint,
                vec![1, 2],
            )),
            SHA1_NONCE,
        );
        assert_eq!(m.name(), "SCRAM-SHA-1-PLUS");
        assert_eq!(
            text(m.initial_response().unwrap().unwrap()),
            "p=tls-server-end-point,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
        );
    }

    #[test]
    fn rfc5802_section_6_binding_choice() {
        let cb = || ChannelBinding::new(ChannelBindingKind::TlsExporter, vec![0; 32]);
        assert_eq!(Binding::choose(Some(cb()), true), Binding::Plus(cb()));
        assert_eq!(
            Binding::choose(Some(cb()), false),
            Binding::SupportedButNotAdvertised
        );
        assert_eq!(Binding::choose(None, true), Binding::Unsupported);
        assert_eq!(Binding::choose(None, false), Binding::Unsupported);
    }

    #[test]
    fn rfc4013_section_3_saslprep_examples() {
        let ok = |s: &str| saslprep("password", s).unwrap().expose().clone();
        assert_eq!(ok("I\u{00AD}X"), "IX"); // SOFT HYPHEN mapped to nothing
        assert_eq!(ok("user"), "user"); // no transformation
        assert_eq!(ok("USER"), "USER"); // case preserved
        assert_eq!(ok("\u{00AA}"), "a"); // output is NFKC, input in ISO 8859-1
        assert_eq!(ok("\u{2168}"), "IX"); // output is NFKC
        assert_eq!(
            saslprep("password", "\u{0007}").unwrap_err(),
            SaslError::SaslPrepFailed { what: "password" }
        ); // prohibited character
        assert_eq!(
            saslprep("password", "\u{0627}\u{0031}").unwrap_err(),
            SaslError::SaslPrepFailed { what: "password" }
        ); // bidirectional check
        // Non-ASCII space maps to SPACE.
        assert_eq!(ok("a\u{00A0}b"), "a b");
    }

    #[test]
    fn unpreparable_or_empty_credentials_refused_before_sending() {
        let new = |user: &str, pw: &str| {
            Scram::new(
                ScramHash::Sha256,
                user,
                Secret::new(pw.into()),
                None,
                Binding::Unsupported,
                ClientNonce::new("n").unwrap(),
            )
        };
        let err = new("user", "hunter2\u{0007}").err().unwrap();
        assert_eq!(err, SaslError::SaslPrepFailed { what: "password" });
        assert!(!err.to_string().contains("hunter2"));
        assert!(matches!(
            new("u\u{0627}1", "pencil").err().unwrap(),
            SaslError::SaslPrepFailed { what: "username" }
        ));
        assert!(matches!(
            new("user", "").err().unwrap(),
            SaslError::UnusableCredential {
                what: "password",
                ..
            }
        ));
        assert!(matches!(
            new("\u{00AD}", "pencil").err().unwrap(),
            SaslError::UnusableCredential {
                what: "username",
                ..
            }
        ));
    }

    #[test]
    fn client_nonces_are_checked_and_random_ones_differ() {
        assert!(ClientNonce::new("").is_err());
        assert!(ClientNonce::new("a,b").is_err());
        assert!(ClientNonce::new("a b").is_err());
        let a = ClientNonce::random().unwrap();
        let b = ClientNonce::random().unwrap();
        assert_eq!(a.as_str().len(), 32);
        assert!(ClientNonce::new(a.as_str()).is_ok());
        assert_ne!(a, b);
    }

    #[test]
    fn errors_never_show_the_password() {
        let mut m = at_server_final(ScramHash::Sha256);
        let err = m.step(b"v=AAAA").unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("pencil"), "{shown}");
    }
}

/// Our client against rsasl's SCRAM server, an independent implementation.
#[cfg(test)]
mod oracle {
    use std::io::Cursor;

    use rsasl::callback::{Context, Request, SessionCallback, SessionData};
    use rsasl::mechanisms::scram::properties::ScramStoredPassword;
    use rsasl::mechanisms::scram::tools::{derive_keys, hash_password};
    use rsasl::mechanisms::scram::{SCRAM_SHA1, SCRAM_SHA1_PLUS, SCRAM_SHA256, SCRAM_SHA256_PLUS};
    use rsasl::prelude::{
        ChannelBindingCallback, Mechname, Registry, SASLConfig, SASLServer, SessionError,
    };
    use rsasl::validate::NoValidation;

    use super::*;

    static MECHANISMS: &[rsasl::prelude::Mechanism] =
        &[SCRAM_SHA1, SCRAM_SHA1_PLUS, SCRAM_SHA256, SCRAM_SHA256_PLUS];
    /// A server that does not offer (and so does not support) channel binding.
    static WITHOUT_PLUS: &[rsasl::prelude::Mechanism] = &[SCRAM_SHA1, SCRAM_SHA256];

    struct Stored {
        salt: Vec<u8>,
        iterations: u32,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
    }

    impl SessionCallback for Stored {
        fn callback(
            &self,
            _session_data: &SessionData,
            _context: &Context,
            request: &mut Request,
        ) -> Result<(), SessionError> {
            request.satisfy::<ScramStoredPassword>(&ScramStoredPassword::new(
                self.iterations,
                &self.salt,
                &self.stored_key,
                &self.server_key,
            ))?;
            Ok(())
        }
    }

    struct Cb(Option<(&'static str, Vec<u8>)>);
    impl ChannelBindingCallback for Cb {
        fn get_cb_data(&self, cbname: &str) -> Option<&[u8]> {
            self.0
                .as_ref()
                .filter(|(name, _)| *name == cbname)
                .map(|(_, data)| data.as_slice())
        }
    }

    fn stored<D>(password: &str) -> Stored
    where
        D: Digest + BlockSizeUser + Clone + Sync + hmac::digest::FixedOutputReset,
    {
        let salt = b"an oracle salt".to_vec();
        let mut salted = Default::default();
        hash_password::<D>(password.as_bytes(), 4096, &salt, &mut salted);
        let (client_key, server_key) = derive_keys::<D>(salted.as_slice());
        Stored {
            salt,
            iterations: 4096,
            stored_key: D::digest(client_key).to_vec(),
            server_key: server_key.to_vec(),
        }
    }

    /// Runs our client against the oracle server; returns our client's outcome.
    fn run(
        hash: ScramHash,
        server_password: &str,
        client_password: &str,
        server_cb: Option<(&'static str, Vec<u8>)>,
        binding: Binding,
    ) -> Result<(), SaslError> {
        run_with(
            MECHANISMS,
            hash,
            server_password,
            client_password,
            server_cb,
            binding,
        )
    }

    fn run_with(
        mechanisms: &'static [rsasl::prelude::Mechanism],
        hash: ScramHash,
        server_password: &str,
        client_password: &str,
        server_cb: Option<(&'static str, Vec<u8>)>,
        binding: Binding,
    ) -> Result<(), SaslError> {
        let stored = match hash {
            ScramHash::Sha1 => stored::<sha1::Sha1>(server_password),
            ScramHash::Sha256 => stored::<sha2::Sha256>(server_password),
        };
        let config = SASLConfig::builder()
            .with_registry(Registry::with_mechanisms(mechanisms))
            .with_callback(stored)
            .unwrap();
        let mut client = Scram::new(
            hash,
            "user",
            Secret::new(client_password.into()),
            None,
            binding,
            ClientNonce::random().unwrap(),
        )
        .unwrap();
        let server = SASLServer::<NoValidation, Cb>::with_cb(config, Cb(server_cb));
        let mut session = server
            .start_suggested(Mechname::parse(client.name().as_bytes()).unwrap())
            .unwrap();
        let mut to_server = client.initial_response()?.unwrap().expose().clone();
        loop {
            let mut out = Cursor::new(Vec::new());
            let state = session.step(Some(&to_server), &mut out);
            let challenge = out.into_inner();
            if challenge.is_empty() {
                // The server stopped without a message: it refused.
                return Err(SaslError::ServerError {
                    mechanism: client.name(),
                    value: format!("oracle: {state:?}"),
                });
            }
            to_server = client.step(&challenge)?.expose().clone();
            if client.is_complete() {
                assert!(state.unwrap().is_finished());
                return Ok(());
            }
        }
    }

    #[test]
    fn interoperates_with_rsasl_server_sha1_and_sha256() {
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            for password in ["pencil", "pass,word=\u{e9}t\u{e9}"] {
                run(hash, password, password, None, Binding::Unsupported).unwrap();
            }
        }
    }

    #[test]
    fn rsasl_server_refuses_a_wrong_password() {
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            let err = run(hash, "pencil", "crayon", None, Binding::Unsupported).unwrap_err();
            assert!(matches!(err, SaslError::ServerError { .. }), "{err:?}");
        }
    }

    #[test]
    fn interoperates_with_rsasl_server_plus_tls_exporter() {
        let data = vec![7u8; 32];
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            run(
                hash,
                "pencil",
                "pencil",
                Some(("tls-exporter", data.clone())),
                Binding::Plus(ChannelBinding::new(
                    ChannelBindingKind::TlsExporter,
                    data.clone(),
                )),
            )
            .unwrap();
        }
    }

    #[test]
    fn rsasl_server_refuses_mismatched_channel_binding() {
        let err = run(
            ScramHash::Sha256,
            "pencil",
            "pencil",
            Some(("tls-exporter", vec![1u8; 32])),
            Binding::Plus(ChannelBinding::new(
                ChannelBindingKind::TlsExporter,
                vec![2u8; 32],
            )),
        )
        .unwrap_err();
        assert!(matches!(err, SaslError::ServerError { .. }), "{err:?}");
    }

    #[test]
    fn y_flag_accepted_by_a_server_without_binding_and_refused_by_one_with_it() {
        run_with(
            WITHOUT_PLUS,
            ScramHash::Sha256,
            "pencil",
            "pencil",
            None,
            Binding::SupportedButNotAdvertised,
        )
        .unwrap();
        // A server that offers -PLUS sees `y`: -PLUS was stripped on the way, so it refuses.
        let err = run(
            ScramHash::Sha256,
            "pencil",
            "pencil",
            None,
            Binding::SupportedButNotAdvertised,
        )
        .unwrap_err();
        assert!(matches!(err, SaslError::ServerError { .. }), "{err:?}");
    }
}
