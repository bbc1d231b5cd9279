//! Passwords (argon2id) and access tokens (JWT, HS256 with a `kid` naming the key; issuer,
//! audience, expiry and the user's token version checked).

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, Params, Version};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
};
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

/// How much higher the password-hashing threads' nice value is than the process's (at most
/// 19, the lowest priority): request handling at 0, hashing at 10. On Linux's scheduler a
/// thread at nice 10 weighs about a tenth of one at 0, so a flood of logins takes the CPU
/// that request handling leaves idle instead of competing with it as an equal (issue 13,
/// `make bench-abuse` on two cores). Relative, so that a server started at a lower priority
/// (nice 10) does not hash at the priority of its requests.
pub const HASH_THREAD_NICE: i32 = 10;
/// The name of the password-hashing threads (`password-hash-0`, `-1`, ...).
pub const HASH_THREAD_NAME: &str = "password-hash";

/// A job for the hashing threads.
type Job = Box<dyn FnOnce() + Send>;

/// The argon2id [`ports::PasswordHasher`]: hashes on `concurrency` threads of its own
/// ([`HASH_THREAD_NAME`], [`HASH_THREAD_NICE`] below the process's priority), at most
/// `concurrency` at a time (each holds [`ARGON2_MEMORY_KIB`] while it runs). Its own threads,
/// not tokio's blocking pool, so that their priority can be lowered without touching other
/// blocking work, and so that hashing never runs on more than `concurrency` threads (and
/// allocator arenas). A request that cannot get a permit within `queue_timeout` fails with
/// [`Error::Busy`] (503 with Retry-After) instead of queueing without bound. The threads end
/// when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Argon2Hasher {
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
    jobs: std::sync::mpsc::Sender<Job>,
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
    /// At most `concurrency` (at least 1) hashes at once, on as many threads started here;
    /// wait at most `queue_timeout`.
    pub fn new(concurrency: usize, queue_timeout: Duration) -> Self {
        let concurrency = concurrency.max(1);
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for i in 0..concurrency {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{HASH_THREAD_NAME}-{i}"))
                .spawn(move || {
                    // A new thread starts at its creator's nice value (per thread on Linux).
                    let lowered = rustix::process::getpriority_process(None).and_then(|nice| {
                        rustix::process::setpriority_process(None, (nice + HASH_THREAD_NICE).min(19))
                    });
                    if let Err(e) = lowered {
                        tracing::warn!(error = %e, "cannot lower the priority of a password-hashing thread");
                    }
                    loop {
                        // The lock is released before the job runs.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // every sender is gone
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-hashing thread");
            }
        }
        Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            queue_timeout,
            jobs,
        }
    }

    /// Runs `f` on a hashing thread once a permit is free. The permit moves into the job, so
    /// it is held until the hash is done even when the request is cancelled.
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
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _permit = permit;
                let _ = done.send(f());
            }))
            .map_err(|_| Error::Crypto("no password-hashing thread is running".to_owned()))?;
        result
            .await
            .map_err(|_| Error::Crypto("the password hashing job failed".to_owned()))
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

/// The shortest accepted signing secret, in bytes: an HS256 key must be at least as long as
/// the hash output, 256 bits (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;
/// The shortest token lifetime (`JWT_TTL_SECONDS`): a minute.
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// The longest token lifetime (`JWT_TTL_SECONDS`): a day. A stolen token is good for at most
/// this long unless its user logs out (which revokes it at once).
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Checks a signing secret read from the variable `var`: at least [`MIN_SECRET_BYTES`].
pub fn check_secret(var: &'static str, secret: &str) -> Result<()> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(Error::Config {
            var,
            reason: format!(
                "is {} bytes; it must be at least {MIN_SECRET_BYTES} bytes (RFC 7518 §3.2: an HS256 \
                 key is at least as long as the hash). Generate one with `openssl rand -base64 48`",
                secret.len()
            ),
        });
    }
    Ok(())
}

/// Checks a token lifetime (`JWT_TTL_SECONDS`): between [`MIN_TTL`] and [`MAX_TTL`].
pub fn check_ttl(ttl: Duration) -> Result<()> {
    if (MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Ok(());
    }
    Err(Error::Config {
        var: "JWT_TTL_SECONDS",
        reason: format!(
            "is {} s; it must be between {} (a minute) and {} (a day)",
            ttl.as_secs(),
            MIN_TTL.as_secs(),
            MAX_TTL.as_secs()
        ),
    })
}

/// The key id (`kid` header) of a secret: the first 8 bytes of its SHA-256, in hex. It tells
/// which key signed a token without revealing anything usable about the key.
pub fn key_id(secret: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
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
    /// The user's token version when the token was issued; a logout increments the stored
    /// version, which revokes every earlier token. Tokens from before versions existed have
    /// none and count as version 0.
    #[serde(default)]
    pub ver: i64,
}

/// One signing key and its id.
#[derive(Clone)]
struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Key {
    fn new(secret: &str) -> Self {
        Self {
            kid: key_id(secret),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
        }
    }
}

/// Signs tokens with the current key (`JWT_SECRET`) and checks them with the current or the
/// previous key (`JWT_SECRET_PREVIOUS`), chosen by the token's `kid` header, so the secret
/// can rotate without logging anyone out. With several pods, rotate in three rollouts so
/// that old and new pods always accept each other's tokens: (1) the new secret as the
/// previous one; (2) swap the two; (3) once the TTL has passed, drop the previous one.
///
/// Only HS256 is accepted (`alg: none` and every other algorithm are refused), with a known
/// `kid`, our issuer and audience, and an expiry in the future (5 s of leeway). A token
/// without a `kid` was issued before keys had ids: it is checked with the current key only,
/// so such tokens keep working until they expire and then no longer exist.
#[derive(Clone)]
pub struct Tokens {
    current: Key,
    previous: Option<Key>,
    ttl: Duration,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("kid", &self.current.kid)
            .field("previous_kid", &self.previous.as_ref().map(|k| &k.kid))
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
    /// Keys from `JWT_SECRET` (`current`) and `JWT_SECRET_PREVIOUS`; tokens live `ttl`.
    /// Refuses secrets shorter than [`MIN_SECRET_BYTES`] and lifetimes outside
    /// [`MIN_TTL`]..=[`MAX_TTL`], naming the variable.
    pub fn new(current: &str, previous: Option<&str>, ttl: Duration) -> Result<Self> {
        check_secret("JWT_SECRET", current)?;
        if let Some(previous) = previous {
            check_secret("JWT_SECRET_PREVIOUS", previous)?;
        }
        check_ttl(ttl)?;
        Ok(Self {
            current: Key::new(current),
            previous: previous.map(Key::new),
            ttl,
        })
    }

    /// Seconds a new token lives.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs()
    }

    /// The `kid` of the current key.
    pub fn kid(&self) -> &str {
        &self.current.kid
    }

    /// A token for `user` at token version `version`.
    pub fn issue(&self, user: Uuid, version: i64) -> Result<String> {
        let iat = now_secs();
        self.sign(&Claims {
            sub: user,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat,
            exp: iat + self.ttl.as_secs(),
            ver: version,
        })
    }

    /// Signs arbitrary claims with the current key (tests use it to forge expired or
    /// foreign tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String> {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current.kid.clone());
        encode(&header, claims, &self.current.encoding)
            .map_err(|e| Error::Crypto(format!("signing a token: {e}")))
    }

    /// The key a token names: the current or the previous one by `kid`; the current one when
    /// the token has no `kid` (issued before keys had ids); `None` for an unknown `kid`.
    fn key_for(&self, kid: Option<&str>) -> Option<&Key> {
        let Some(kid) = kid else {
            return Some(&self.current);
        };
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|key| key.kid == kid)
    }

    /// The subject of a valid token, or `None` (unknown `kid`, an algorithm other than
    /// HS256, bad signature, issuer, audience, expiry).
    pub fn verify(&self, token: &str) -> Option<ports::TokenSubject> {
        let header = decode_header(token).ok()?;
        if header.alg != Algorithm::HS256 {
            return None;
        }
        let key = self.key_for(header.kid.as_deref())?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        decode::<Claims>(token, &key.decoding, &validation)
            .ok()
            .map(|data| ports::TokenSubject {
                user: data.claims.sub,
                version: data.claims.ver,
            })
    }
}

impl TokenIssuer for Tokens {
    fn issue(&self, user: Uuid, version: i64) -> Result<String> {
        Tokens::issue(self, user, version)
    }

    fn verify(&self, token: &str) -> Option<ports::TokenSubject> {
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

    /// The nice value of the calling thread, from `/proc/thread-self/stat` (field 19).
    fn thread_nice() -> Option<i32> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        let (_, after_name) = stat.rsplit_once(')')?;
        after_name.split_whitespace().nth(16)?.parse().ok()
    }

    #[tokio::test]
    async fn hashing_runs_on_its_own_threads_at_a_lower_priority() {
        let hasher = Argon2Hasher::new(2, Duration::from_secs(30));
        // Relative to the process's own priority: under `nice -n 10 cargo test`, or in a pod
        // started at a lower priority, hashing stays below request handling.
        let base = thread_nice().expect("the nice value of the test's thread");
        let lowered = (base + HASH_THREAD_NICE).min(19);
        for _ in 0..4 {
            let (name, nice) = hasher
                .blocking(|| {
                    (
                        std::thread::current().name().map(str::to_owned),
                        thread_nice(),
                    )
                })
                .await
                .unwrap();
            // Its own threads (a fixed set), not tokio's blocking pool.
            assert!(
                name.as_deref()
                    .is_some_and(|n| n.starts_with(HASH_THREAD_NAME)),
                "name of a hashing thread: {name:?}"
            );
            assert_eq!(
                nice,
                Some(lowered),
                "nice of a hashing thread (the test's: {base})"
            );
        }
        // Other blocking work keeps the normal priority.
        let nice = tokio::task::spawn_blocking(thread_nice).await.unwrap();
        assert_eq!(nice, Some(base), "nice of tokio's blocking pool");
    }

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong horse", &phc));
        assert!(!verify_password("correct horse", "not a phc string"));
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const OTHER: &str = "another-secret-0123456789abcdef-xyz";

    #[test]
    fn tokens_check_signature_issuer_audience_and_expiry() {
        let tokens = Tokens::new(SECRET, None, Duration::from_secs(60)).unwrap();
        let user = Uuid::new_v4();
        let subject = tokens.verify(&tokens.issue(user, 3).unwrap()).unwrap();
        assert_eq!((subject.user, subject.version), (user, 3));
        let other = Tokens::new(OTHER, None, Duration::from_secs(60)).unwrap();
        assert!(other.verify(&tokens.issue(user, 0).unwrap()).is_none());
        let now = now_secs();
        let good = Claims {
            sub: user,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now,
            exp: now + 60,
            ver: 0,
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
            assert!(
                tokens.verify(&tokens.sign(&bad).unwrap()).is_none(),
                "{bad:?}"
            );
        }
        assert!(tokens.verify("garbage").is_none());
    }

    #[test]
    fn the_previous_key_verifies_until_it_is_removed() {
        let ttl = Duration::from_secs(60);
        let user = Uuid::new_v4();
        let before = Tokens::new(SECRET, None, ttl).unwrap();
        let old = before.issue(user, 0).unwrap();
        let rotated = Tokens::new(OTHER, Some(SECRET), ttl).unwrap();
        assert_eq!(rotated.verify(&old).map(|s| s.user), Some(user));
        let new = rotated.issue(user, 0).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&new).unwrap().kid.as_deref(),
            Some(key_id(OTHER).as_str())
        );
        let after = Tokens::new(OTHER, None, ttl).unwrap();
        assert!(after.verify(&old).is_none());
        assert_eq!(after.verify(&new).map(|s| s.user), Some(user));
    }

    #[test]
    fn key_ids_are_short_hex_and_differ_per_key() {
        let kid = key_id(SECRET);
        assert_eq!(kid.len(), 16);
        assert!(kid.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(kid, key_id(OTHER));
        assert!(!SECRET.contains(&kid));
    }

    #[test]
    fn short_secrets_and_unbounded_lifetimes_are_refused() {
        let short = "x".repeat(MIN_SECRET_BYTES - 1);
        let err = Tokens::new(&short, None, MIN_TTL).unwrap_err().to_string();
        assert!(
            err.contains("JWT_SECRET") && err.contains("openssl rand"),
            "{err}"
        );
        let err = Tokens::new(SECRET, Some(&short), MIN_TTL)
            .unwrap_err()
            .to_string();
        assert!(err.contains("JWT_SECRET_PREVIOUS"), "{err}");
        for ttl in [
            MIN_TTL - Duration::from_secs(1),
            MAX_TTL + Duration::from_secs(1),
        ] {
            let err = Tokens::new(SECRET, None, ttl).unwrap_err().to_string();
            assert!(err.contains("JWT_TTL_SECONDS"), "{err}");
        }
        assert!(Tokens::new(SECRET, None, MAX_TTL).is_ok());
    }
}
