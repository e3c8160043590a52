//! The ACME account: created once per directory, its credentials kept in the state directory
//! (mode 0600: they hold the account key) and restored on every start.

use std::path::{Path, PathBuf};

use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use labgate_config::settings::AcmeSettings;
use sha2::{Digest, Sha256};

use crate::http::AcmeHttp;
use crate::{Error, secret, write_atomic};

/// Where the credentials for `settings`' directory are kept.
pub(crate) fn path(state_dir: &Path, settings: &AcmeSettings) -> PathBuf {
    let digest = Sha256::digest(settings.directory.as_str().as_bytes());
    let tag: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    state_dir.join("acme").join(format!("account-{tag}.json"))
}

/// The account for `settings`: restored from the state directory, else created (with
/// External Account Binding when configured) and saved.
pub(crate) async fn load_or_create(
    state_dir: &Path,
    settings: &AcmeSettings,
    http: &AcmeHttp,
) -> Result<Account, Error> {
    let path = path(state_dir, settings);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let creds: AccountCredentials =
            serde_json::from_str(&text).map_err(|e| Error::Material {
                path: path.clone(),
                what: format!("account credentials do not parse ({e})"),
            })?;
        return Account::builder_with_http(Box::new(http.clone()))
            .from_credentials(creds)
            .await
            .map_err(Error::from);
    }
    let eab = match &settings.eab {
        Some((kid, file)) => Some(ExternalAccountKey::new(
            kid.to_string(),
            &secret::eab_hmac(file)?,
        )),
        None => None,
    };
    let contact = format!("mailto:{}", settings.email);
    let (account, creds) = Account::builder_with_http(Box::new(http.clone()))
        .create(
            &NewAccount {
                contact: &[&contact],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.to_string(),
            eab.as_ref(),
        )
        .await?;
    let json = serde_json::to_vec(&creds).map_err(|e| Error::Client(e.into()))?;
    write_atomic(&path, &json, 0o600)?;
    tracing::info!("ACME account created at {}", settings.directory);
    Ok(account)
}

/// Forgets stored credentials the server no longer knows (a CA reset, a test server restart).
pub(crate) fn forget(state_dir: &Path, settings: &AcmeSettings) {
    let _ = std::fs::remove_file(path(state_dir, settings));
}
