//! Registering, logging in and authenticating.

use serde::Serialize;
use uuid::Uuid;

use super::{AppResult, UseCases};
use crate::domain::{self, NewEvent};
use crate::error::AppError;
use crate::ports::{PasswordHasher, Store, TokenIssuer, TokenSubject, UnitOfWork};

/// The answer to a registration: the same for a new account and a taken e-mail.
#[derive(Debug, Clone, Serialize)]
pub struct Registered {
    /// User id (for a taken e-mail, a fresh id that names no account).
    pub id: Uuid,
    /// Normalised e-mail.
    pub email: String,
}

/// A successful login.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    /// The access token.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the token lives.
    pub expires_in: u64,
    /// The user.
    pub user_id: Uuid,
}

impl<S: Store, H: PasswordHasher, T> UseCases<S, H, T> {
    /// Registers a user.
    ///
    /// A taken e-mail gets the same answer as a new one (and costs the same hash), and the
    /// existing account is left as it is: the answer must not tell who has an account
    /// (account enumeration). Without an e-mail channel to tell the owner, the cost is that
    /// someone registering twice learns it only when the second password does not log in.
    pub async fn register(&self, email: &str, password: &str) -> AppResult<Registered> {
        let email = domain::email(email)?;
        domain::password(password)?;
        let hash = self.hasher.hash(password.to_owned()).await?;
        let id = Uuid::new_v4();
        let mut tx = self.store.begin().await?;
        if !tx.insert_user(id, &email, &hash).await? {
            return Ok(Registered { id, email });
        }
        tx.publish(&NewEvent::user_registered(id)).await?;
        for (list, role) in tx.claim_invitations(id, &email).await? {
            tx.publish(&NewEvent::list_shared(list, id, role)).await?;
        }
        tx.commit().await?;
        Ok(Registered { id, email })
    }
}

impl<S: Store, H: PasswordHasher, T: TokenIssuer> UseCases<S, H, T> {
    /// Checks the password and issues a token; the same answer for an unknown e-mail and a
    /// wrong password.
    pub async fn login(&self, email: &str, password: &str) -> AppResult<Session> {
        let email = domain::email(email)?;
        let user = self.store.user_by_email(&email).await?;
        let phc = user.as_ref().map(|u| u.password_hash.clone());
        let valid = self.hasher.verify(password.to_owned(), phc).await?;
        match user {
            Some(user) if valid => Ok(Session {
                token: self.tokens.issue(user.id, user.token_version)?,
                token_type: "Bearer",
                expires_in: self.tokens.ttl_secs(),
                user_id: user.id,
            }),
            _ => Err(AppError::Unauthorized("wrong e-mail or password")),
        }
    }
}

impl<S: Store, H, T: TokenIssuer> UseCases<S, H, T> {
    /// The user of a bearer token: validly signed, unexpired, and issued at the user's
    /// current token version (one primary-key read), so a logout revokes it at once and a
    /// deleted user's token stops working. [`Self::claim`], then [`Self::user`].
    pub async fn authenticate(&self, token: &str) -> AppResult<Uuid> {
        self.user(self.claim(token)?).await
    }

    /// Whom a bearer token names, if it is validly signed with a known key, for our issuer
    /// and audience, and unexpired; no I/O. Its version is not checked yet: a revoked token
    /// passes here, so the claim goes either to [`Self::user`] or to a read that checks the
    /// version in its own statement ([`Self::get_list`]).
    pub fn claim(&self, token: &str) -> AppResult<TokenSubject> {
        self.tokens.verify(token).ok_or(AppError::InvalidToken)
    }
}

impl<S: Store, H, T> UseCases<S, H, T> {
    /// The user of a claim issued at the user's current token version (one primary-key
    /// read): a logout increments the version, which revokes every earlier token.
    pub async fn user(&self, claim: TokenSubject) -> AppResult<Uuid> {
        match self.store.token_version(claim.user).await? {
            Some(version) if version == claim.version => Ok(claim.user),
            _ => Err(AppError::InvalidToken),
        }
    }

    /// Logs `user` out everywhere: every token issued to them so far stops working.
    pub async fn logout(&self, user: Uuid) -> AppResult<()> {
        let mut tx = self.store.begin().await?;
        if !tx.revoke_tokens(user).await? {
            return Err(AppError::InvalidToken);
        }
        tx.commit().await?;
        Ok(())
    }
}
