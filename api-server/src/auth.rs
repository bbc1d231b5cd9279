//! Passwords (argon2id) and access tokens (JWT, HS256, issuer/audience/expiry checked).

use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ports::{self, TokenIssuer};
use crate::{Error, Result};

/// Token issuer.
pub const ISSUER: &str = "listacompra-api";
/// Token audience.
pub const AUDIENCE: &str = "listacompra";

/// Hashes a password into a PHC string (CPU heavy: call from a blocking thread).
pub fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Crypto(format!("hashing a password: {e}")))
}

/// Whether `password` matches the stored PHC string (CPU heavy: call from a blocking thread).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A PHC string for a password nobody knows, verified when the e-mail is unknown so that
/// login takes as long either way.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&Uuid::new_v4().to_string()).unwrap_or_default())
}

/// The argon2id [`ports::PasswordHasher`]: hashes on the blocking thread pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct Argon2Hasher;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Crypto(format!("the password hashing task failed: {e}")))
}

impl ports::PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: String) -> Result<String> {
        blocking(move || hash_password(&password)).await?
    }

    async fn verify(&self, password: String, phc: Option<String>) -> Result<bool> {
        blocking(move || match phc {
            Some(phc) => verify_password(&password, &phc),
            None => {
                // As long as a real check, and false.
                let _ = verify_password(&password, dummy_hash());
                false
            }
        })
        .await
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
}

/// Signs and checks tokens with one secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Tokens {
    /// Keys from `JWT_SECRET`; tokens live `ttl`.
    pub fn new(secret: &str, ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            ttl,
        }
    }

    /// Seconds a new token lives.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs()
    }

    /// A token for `user`.
    pub fn issue(&self, user: Uuid) -> Result<String> {
        let iat = now_secs();
        self.sign(&Claims {
            sub: user,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat,
            exp: iat + self.ttl.as_secs(),
        })
    }

    /// Signs arbitrary claims (tests use it to forge expired or foreign tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| Error::Crypto(format!("signing a token: {e}")))
    }

    /// The user of a valid token, or `None` (bad signature, issuer, audience, expiry).
    pub fn verify(&self, token: &str) -> Option<Uuid> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims.sub)
    }
}

impl TokenIssuer for Tokens {
    fn issue(&self, user: Uuid) -> Result<String> {
        Tokens::issue(self, user)
    }

    fn verify(&self, token: &str) -> Option<Uuid> {
        Tokens::verify(self, token)
    }

    fn ttl_secs(&self) -> u64 {
        Tokens::ttl_secs(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong horse", &phc));
        assert!(!verify_password("correct horse", "not a phc string"));
    }

    #[test]
    fn tokens_check_signature_issuer_audience_and_expiry() {
        let tokens = Tokens::new("0123456789abcdef", Duration::from_secs(60));
        let user = Uuid::new_v4();
        assert_eq!(tokens.verify(&tokens.issue(user).unwrap()), Some(user));
        let other = Tokens::new("another-secret-0123", Duration::from_secs(60));
        assert_eq!(other.verify(&tokens.issue(user).unwrap()), None);
        let now = now_secs();
        let good = Claims {
            sub: user,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now,
            exp: now + 60,
        };
        assert!(tokens.verify(&tokens.sign(&good).unwrap()).is_some());
        for bad in [
            Claims {
                exp: now - 120,
                ..good.clone()
            },
            Claims {
                iss: "someone-else".to_owned(),
                ..good.clone()
            },
            Claims {
                aud: "other-app".to_owned(),
                ..good.clone()
            },
        ] {
            assert_eq!(tokens.verify(&tokens.sign(&bad).unwrap()), None, "{bad:?}");
        }
        assert_eq!(tokens.verify("garbage"), None);
    }
}
