//! Passwords (argon2id) and access tokens (JWT, HS256, issuer/audience/expiry checked).

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, Params, Version};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::ports::{self, TokenIssuer};
use crate::{Error, Result};

/// Token issuer.
pub const ISSUER: &str = "listacompra-api";
/// Token audience.
pub const AUDIENCE: &str = "listacompra";

/// argon2id memory per hash or verification, in KiB: 19 MiB (OWASP's minimum for argon2id,
/// and the `argon2` crate's default). Allocated for the whole computation, so the memory
/// budget of password hashing is `PASSWORD_HASH_CONCURRENCY` × 19 MiB (76 MiB at the
/// default of 4), on top of the server's ~60 MiB at rest.
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
/// argon2id passes over the memory.
pub const ARGON2_PASSES: u32 = 2;
/// argon2id lanes (threads per hash; 1 keeps each hash on one blocking thread).
pub const ARGON2_LANES: u32 = 1;

/// argon2id with the parameters above. Verification reads the parameters from the stored
/// PHC string, so hashes made with other parameters keep verifying.
fn argon2() -> Result<Argon2<'static>> {
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_LANES, None)
        .map_err(|e| Error::Crypto(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(
        argon2::Algorithm::Argon2id,
        Version::V0x13,
        params,
    ))
}

/// Hashes a password into a PHC string (CPU heavy: call from a blocking thread).
pub fn hash_password(password: &str) -> Result<String> {
    argon2()?
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Crypto(format!("hashing a password: {e}")))
}

/// Whether `password` matches the stored PHC string (CPU heavy: call from a blocking thread).
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(argon2) = argon2() else {
        return false;
    };
    PasswordHash::new(phc)
        .map(|h| argon2.verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A PHC string for a password nobody knows, verified when the e-mail is unknown so that
/// login takes as long either way.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&Uuid::new_v4().to_string()).unwrap_or_default())
}

/// The argon2id [`ports::PasswordHasher`]: hashes on the blocking thread pool, at most
/// `concurrency` at a time (each holds [`ARGON2_MEMORY_KIB`] while it runs). A request that
/// cannot get a permit within `queue_timeout` fails with [`Error::Busy`] (503 with
/// Retry-After) instead of queueing without bound.
#[derive(Debug, Clone)]
pub struct Argon2Hasher {
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
}

/// Default `PASSWORD_HASH_CONCURRENCY`: 4 hashes at once, 76 MiB.
pub const DEFAULT_HASH_CONCURRENCY: usize = 4;
/// Default `PASSWORD_HASH_QUEUE_TIMEOUT_MS`: 2 s.
pub const DEFAULT_HASH_QUEUE_TIMEOUT: Duration = Duration::from_secs(2);

impl Default for Argon2Hasher {
    fn default() -> Self {
        Self::new(DEFAULT_HASH_CONCURRENCY, DEFAULT_HASH_QUEUE_TIMEOUT)
    }
}

impl Argon2Hasher {
    /// At most `concurrency` (at least 1) hashes at once; wait at most `queue_timeout`.
    pub fn new(concurrency: usize, queue_timeout: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            queue_timeout,
        }
    }

    /// Runs `f` on a blocking thread once a permit is free. The permit moves into the
    /// thread, so it is held until the hash is done even when the request is cancelled.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let busy = || Error::Busy {
            what: "password hashing",
            limit: "PASSWORD_HASH_CONCURRENCY",
            retry_after: Duration::from_secs(1),
        };
        let permit =
            match tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned())
                .await
            {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) | Err(_) => return Err(busy()),
            };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(|e| Error::Crypto(format!("the password hashing task failed: {e}")))
    }
}

impl ports::PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: String) -> Result<String> {
        self.blocking(move || hash_password(&password)).await?
    }

    async fn verify(&self, password: String, phc: Option<String>) -> Result<bool> {
        self.blocking(move || match phc {
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

    #[tokio::test]
    async fn hashing_waits_for_a_permit_at_most_the_queue_timeout() {
        use ports::PasswordHasher as _;
        let hasher = Argon2Hasher::new(1, Duration::from_millis(20));
        let held = hasher.permits.clone().acquire_owned().await.unwrap();
        let err = hasher.hash("correct horse".to_owned()).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Busy {
                    limit: "PASSWORD_HASH_CONCURRENCY",
                    ..
                }
            ),
            "{err}"
        );
        drop(held);
        assert!(hasher.hash("correct horse".to_owned()).await.is_ok());
    }

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
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
