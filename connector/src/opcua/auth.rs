//! Who an OPC UA session is and what it may do (docs/opcua.md "Security"): Anonymous (off
//! unless enabled), UserName (Argon2 hashes in the configuration, never plaintext); the
//! rights come from the role table Modbus/TCP Security uses, so a rule cannot differ
//! between the two faces.

use crate::authz::{Rights, RoleTable};
use crate::config::OpcUaConfig;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use async_trait::async_trait;
/// The policy id the stack gives anonymous tokens (its constant is private).
const POLICY_ID_ANONYMOUS: &str = "anonymous";
/// The policy id the stack expects of X509 tokens (also private there).
const POLICY_ID_X509: &str = "x509";
use opcua::server::ServerEndpoint;
use opcua::server::authenticator::{
    AuthManager, Password, UserToken, user_pass_security_policy_id, user_pass_security_policy_uri,
};
use opcua::types::{Error, StatusCode, UAString, UserTokenPolicy, UserTokenType};
use std::collections::HashMap;
use std::sync::Arc;

/// Anonymous sessions all share this token (the stack's own identifier for them).
pub const ANONYMOUS: &str = opcua::server::ANONYMOUS_USER_TOKEN_ID;

#[derive(Debug)]
struct User {
    hash: String,
    rights: Arc<Rights>,
}

#[derive(Debug)]
pub struct Access {
    users: HashMap<String, User>,
    /// `None`: anonymous sessions are refused.
    anonymous: Option<Arc<Rights>>,
    /// UserName on the `none` endpoint sends the password in clear: offered only on a
    /// loopback listener or with `allow_insecure`.
    username_in_clear: bool,
    /// X509 user tokens: the trusted certificates' directory (`pki_dir/trusted`), read at
    /// each authentication, so a certificate moved in or out counts at once.
    x509_trusted: Option<std::path::PathBuf>,
    roles: RoleTable,
    /// The rights of the X509 users authenticated so far, by token.
    x509_rights: std::sync::Mutex<HashMap<String, Arc<Rights>>>,
}

impl Access {
    pub fn new(config: &OpcUaConfig, roles: &RoleTable) -> Access {
        let users = config
            .users
            .iter()
            .map(|u| {
                (
                    u.name.clone(),
                    User {
                        hash: u.password_hash.clone(),
                        rights: roles.rights_for(Some(&u.role)).0,
                    },
                )
            })
            .collect();
        let anonymous = config.anonymous.then(|| match &config.anonymous_role {
            Some(r) => roles.rights_for(Some(r)).0,
            None => Arc::new(Rights::read_only("anonymous")),
        });
        Access {
            users,
            anonymous,
            username_in_clear: config.listen.ip().is_loopback() || config.allow_insecure,
            x509_trusted: config
                .x509_users
                .then(|| config.pki_dir.as_ref().map(|d| d.join("trusted")))
                .flatten(),
            roles: roles.clone(),
            x509_rights: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The X509 user whose trusted certificate has `thumbprint`: its token and rights,
    /// from the certificate's role extension. `None`: not trusted, or without a role
    /// this table knows.
    fn x509_user(&self, thumbprint: &opcua::crypto::Thumbprint) -> Result<UserToken, String> {
        let dir = self
            .x509_trusted
            .as_ref()
            .ok_or("X509 user tokens are not enabled")?;
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in entries.flatten() {
            let Ok(der) = std::fs::read(e.path()) else {
                continue;
            };
            let Ok(cert) = opcua::crypto::X509::from_der(&der) else {
                continue;
            };
            if cert.thumbprint() != *thumbprint {
                continue;
            }
            let identity = po_runtime::tls::PeerIdentity::of(&der);
            let Some(role) = identity.role else {
                return Err(format!("{} has no role extension", e.path().display()));
            };
            let (rights, why) = self.roles.rights_for(Some(&role));
            if let Some(why) = why {
                return Err(why);
            }
            let token = format!(
                "x509:{}",
                identity
                    .common_name
                    .unwrap_or_else(|| thumbprint.as_hex_string())
            );
            self.x509_rights
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(token.clone(), rights);
            return Ok(UserToken(token));
        }
        Err("the certificate is not in the trusted list".into())
    }

    /// The rights of a session's user; nothing for a token this table does not know.
    pub fn rights(&self, token: &UserToken) -> Arc<Rights> {
        if token.is_anonymous() {
            return self
                .anonymous
                .clone()
                .unwrap_or_else(|| Arc::new(Rights::none("anonymous")));
        }
        if let Some(r) = self
            .x509_rights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&token.0)
        {
            return r.clone();
        }
        self.users
            .get(&token.0)
            .map(|u| u.rights.clone())
            .unwrap_or_else(|| Arc::new(Rights::none(token.0.clone())))
    }

    fn verify(&self, username: &str, password: &str) -> bool {
        let Some(user) = self.users.get(username) else {
            return false;
        };
        let Ok(hash) = PasswordHash::new(&user.hash) else {
            return false;
        };
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    }
}

/// The stack's view of [`Access`].
#[derive(Debug, Clone)]
pub struct Authenticator(pub Arc<Access>);

fn insecure(endpoint: &ServerEndpoint) -> bool {
    endpoint.security_policy.eq_ignore_ascii_case("none")
}

#[async_trait]
impl AuthManager for Authenticator {
    async fn authenticate_anonymous_token(&self, _endpoint: &ServerEndpoint) -> Result<(), Error> {
        match self.0.anonymous {
            Some(_) => Ok(()),
            None => Err(Error::new(
                StatusCode::BadIdentityTokenRejected,
                "anonymous sessions are not enabled (opcua.anonymous)",
            )),
        }
    }

    async fn authenticate_username_identity_token(
        &self,
        endpoint: &ServerEndpoint,
        username: &str,
        password: &Password,
    ) -> Result<UserToken, Error> {
        if insecure(endpoint) && !self.0.username_in_clear {
            return Err(Error::new(
                StatusCode::BadIdentityTokenRejected,
                "UserName on an endpoint without security is refused here",
            ));
        }
        // Argon2 is deliberately slow: off the IO threads.
        let (access, user, pass) = (
            self.0.clone(),
            username.to_owned(),
            password.get().to_owned(),
        );
        let ok = tokio::task::spawn_blocking(move || access.verify(&user, &pass))
            .await
            .unwrap_or(false);
        if ok {
            Ok(UserToken(username.to_owned()))
        } else {
            tracing::warn!(
                user = username,
                "OPC UA session refused: wrong user name or password"
            );
            Err(Error::new(
                StatusCode::BadUserAccessDenied,
                format!("cannot authenticate \"{username}\""),
            ))
        }
    }

    async fn authenticate_x509_identity_token(
        &self,
        _endpoint: &ServerEndpoint,
        signing_thumbprint: &opcua::crypto::Thumbprint,
    ) -> Result<UserToken, Error> {
        // The stack has checked the token's signature (the client holds the key).
        let (access, thumbprint) = (self.0.clone(), signing_thumbprint.clone());
        match tokio::task::spawn_blocking(move || access.x509_user(&thumbprint)).await {
            Ok(Ok(token)) => Ok(token),
            Ok(Err(why)) => {
                tracing::warn!("OPC UA X509 user refused: {why}");
                Err(Error::new(StatusCode::BadIdentityTokenRejected, why))
            }
            Err(e) => Err(Error::new(StatusCode::BadInternalError, e.to_string())),
        }
    }

    fn user_token_policies(&self, endpoint: &ServerEndpoint) -> Vec<UserTokenPolicy> {
        let mut out = Vec::new();
        if self.0.anonymous.is_some() {
            out.push(UserTokenPolicy {
                policy_id: UAString::from(POLICY_ID_ANONYMOUS),
                token_type: UserTokenType::Anonymous,
                issued_token_type: UAString::null(),
                issuer_endpoint_url: UAString::null(),
                security_policy_uri: UAString::null(),
            });
        }
        if !self.0.users.is_empty() && (!insecure(endpoint) || self.0.username_in_clear) {
            out.push(UserTokenPolicy {
                policy_id: user_pass_security_policy_id(endpoint),
                token_type: UserTokenType::UserName,
                issued_token_type: UAString::null(),
                issuer_endpoint_url: UAString::null(),
                security_policy_uri: user_pass_security_policy_uri(endpoint),
            });
        }
        if self.0.x509_trusted.is_some() && !insecure(endpoint) {
            out.push(UserTokenPolicy {
                policy_id: UAString::from(POLICY_ID_X509),
                token_type: UserTokenType::Certificate,
                issued_token_type: UAString::null(),
                issuer_endpoint_url: UAString::null(),
                // The token is signed with the channel's policy.
                security_policy_uri: UAString::from(endpoint.security_policy().to_uri()),
            });
        }
        out
    }
}

/// An Argon2id hash of `password` in PHC form, for `[[opcua.user]] password_hash`.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModbusConfig, OpcUaUser, RoleConfig};

    #[test]
    fn a_user_is_known_by_the_hash_of_its_password_and_gets_its_roles_rights() {
        let modbus = ModbusConfig {
            roles: vec![RoleConfig {
                name: "viewer".into(),
                read: true,
                write: false,
                tags: vec![],
                registers: vec![],
            }],
            ..ModbusConfig::default()
        };
        let config = OpcUaConfig {
            users: vec![OpcUaUser {
                name: "ann".into(),
                password_hash: hash_password("s3cret").unwrap(),
                role: "viewer".into(),
            }],
            ..OpcUaConfig::default()
        };
        let access = Access::new(&config, &RoleTable::from_config(&modbus));
        assert!(access.verify("ann", "s3cret"));
        assert!(!access.verify("ann", "S3cret"));
        assert!(!access.verify("bob", "s3cret"));
        let r = access.rights(&UserToken("ann".into()));
        assert_eq!(r.role, "viewer");
        assert!(r.permits_tag(crate::authz::Operation::Read, "A.kW"));
        assert!(!r.permits_tag(crate::authz::Operation::Write, "A.kW"));
        let anon = access.rights(&UserToken(ANONYMOUS.into()));
        assert!(
            !anon.permits_tag(crate::authz::Operation::Read, "A.kW"),
            "anonymous is off: no rights"
        );
    }
}
