//! Real identities for the local cluster: a client certificate per user, signed by the
//! cluster's own CA, which the API server authenticates like any user's certificate (the
//! common name is the user name, each organisation a group). RBAC and admission policies
//! then see exactly that user and those groups, as they would an OIDC login.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use kube::Client;
use tokio::process::Command;

use crate::cluster::Cluster;
use crate::{Error, Result};

/// A user of the local cluster with its client certificate.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user name the API server sees.
    pub user: String,
    /// The groups it sees (besides `system:authenticated`).
    pub groups: Vec<String>,
    kubeconfig: PathBuf,
}

impl Identity {
    /// Makes a key and a certificate for `user` in `groups` (valid one day), signed by the
    /// CA next to the admin kubeconfig's `certificate-authority`, and a kubeconfig for it in
    /// `dir` (readable by its owner only).
    pub async fn new(cluster: &Cluster, user: &str, groups: &[&str], dir: &Path) -> Result<Self> {
        let ca_cert = cluster
            .admin_cluster()?
            .cluster
            .and_then(|c| c.certificate_authority)
            .map(PathBuf::from)
            .ok_or_else(|| Error::MissingKey {
                key: "certificate-authority of the current cluster".to_owned(),
                path: cluster.kubeconfig().to_owned(),
            })?;
        let ca_key = ca_cert.with_file_name("ca.key");
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.to_owned(),
            source,
        })?;
        let key = dir.join(format!("{user}.key"));
        let csr = dir.join(format!("{user}.csr"));
        let cert = dir.join(format!("{user}.crt"));
        let subject = std::iter::once(String::new())
            .chain(groups.iter().map(|g| format!("O={g}")))
            .chain(std::iter::once(format!("CN={user}")))
            .collect::<Vec<_>>()
            .join("/");
        openssl(&[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            path_str(&key),
            "-subj",
            &subject,
            "-out",
            path_str(&csr),
        ])
        .await?;
        // Version 3 with a client-auth usage (rustls refuses version 1 certificates).
        let extensions = dir.join(format!("{user}.ext"));
        std::fs::write(
            &extensions,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .map_err(|source| Error::Write {
            path: extensions.clone(),
            source,
        })?;
        openssl(&[
            "x509",
            "-req",
            "-extfile",
            path_str(&extensions),
            "-in",
            path_str(&csr),
            "-CA",
            path_str(&ca_cert),
            "-CAkey",
            path_str(&ca_key),
            "-set_serial",
            &format!("0x{}", uuid::Uuid::new_v4().simple()),
            "-days",
            "1",
            "-out",
            path_str(&cert),
        ])
        .await?;
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| Error::EnvFile {
                path: path.to_owned(),
                source,
            })
        };
        let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
        let kubeconfig = dir.join(format!("{user}.kubeconfig"));
        cluster.write_user_kubeconfig(
            user,
            serde_json::json!({
                "client-certificate-data": b64(read(&cert)?),
                "client-key-data": b64(read(&key)?),
            }),
            None,
            &kubeconfig,
        )?;
        Ok(Self {
            user: user.to_owned(),
            groups: groups.iter().map(ToString::to_string).collect(),
            kubeconfig,
        })
    }

    /// The kubeconfig acting as this user (for tools run as them: kubectl, the plugin).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A new client acting as this user.
    pub async fn client(&self) -> Result<Client> {
        Cluster::client_from(&self.kubeconfig).await
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

async fn openssl(args: &[&str]) -> Result<()> {
    let command = format!("openssl {}", args.join(" "));
    let output = Command::new("openssl")
        .args(args)
        .output()
        .await
        .map_err(|e| Error::Tool {
            command: command.clone(),
            message: format!("{e} (install openssl: apt-get install openssl)"),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Tool {
            command,
            message: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}
