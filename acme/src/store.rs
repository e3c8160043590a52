//! The state directory and the issued certificates in it. The directory holds private keys
//! (ACME account, certificates, the local CA), so it is made 0700 and one that another user
//! could plant keys in is refused ([`prepare_state_dir`]). Certificates: one directory per
//! name set under `acme/certs/`, `chain.pem` (leaf first) and `key.pem` (0600), each written
//! atomically. What is read back is verified like a fresh issuance before it is served.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use labgate_config::settings::AcmeSettings;
use sha2::{Digest, Sha256};

use crate::verify::{CertInfo, verify};
use crate::{Error, write_atomic};

/// Creates the state directory `dir` (mode 0700, with its parents), or checks the one there:
/// it, and the link to it if it is one, must belong to this user (or root), and no one
/// outside this user's groups may write in it. (The demo's sits in a shared `/tmp`, where
/// anyone could have made it first.)
///
/// # Errors
/// [`Error::Io`] when it cannot be made or read; [`Error::StateDirOwner`],
/// [`Error::StateDirNotADirectory`] or [`Error::StateDirWritable`] saying what to change.
pub fn prepare_state_dir(dir: &Path) -> Result<(), Error> {
    let io = |action| {
        move |source| Error::Io {
            action,
            path: dir.to_owned(),
            source,
        }
    };
    let link = match std::fs::symlink_metadata(dir) {
        Ok(link) => link,
        Err(_) => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io("create the state directory"))?;
            std::fs::symlink_metadata(dir).map_err(io("read the state directory"))?
        }
    };
    let target = std::fs::metadata(dir).map_err(io("read the state directory"))?;
    let facts = DirFacts {
        link_owner: link.file_type().is_symlink().then(|| link.uid()),
        owner: target.uid(),
        is_dir: target.is_dir(),
        mode: target.mode(),
        group: target.gid(),
    };
    let in_my_groups = |gid: u32| {
        nix::unistd::getegid().as_raw() == gid
            || nix::unistd::getgroups().is_ok_and(|g| g.iter().any(|g| g.as_raw() == gid))
    };
    check_state_dir(dir, &facts, nix::unistd::geteuid().as_raw(), &in_my_groups)
}

/// What [`check_state_dir`] decides on: the directory entry (a link, or the directory itself)
/// and the directory it leads to.
#[derive(Debug, Clone, Copy)]
struct DirFacts {
    /// Owner of the link at the path, when it is one.
    link_owner: Option<u32>,
    /// Owner of what the path leads to.
    owner: u32,
    /// Whether the path leads to a directory.
    is_dir: bool,
    /// Its mode bits.
    mode: u32,
    /// Its group.
    group: u32,
}

/// Whether `dir`, as `facts` describe it, may hold this user's (`me`) private keys.
fn check_state_dir(
    dir: &Path,
    facts: &DirFacts,
    me: u32,
    in_my_groups: &dyn Fn(u32) -> bool,
) -> Result<(), Error> {
    // SECURITY: whoever owns the link can point it elsewhere, whoever owns the directory can
    // read and replace its keys. root could do both anyway.
    let owned = |uid: u32| uid == me || uid == 0;
    let link = facts.link_owner.map(|owner| ("link", owner));
    for (what, owner) in link.into_iter().chain([("directory", facts.owner)]) {
        if !owned(owner) {
            return Err(Error::StateDirOwner {
                path: dir.to_owned(),
                what,
                owner,
                me,
            });
        }
    }
    if !facts.is_dir {
        return Err(Error::StateDirNotADirectory {
            path: dir.to_owned(),
        });
    }
    // SECURITY: a writer could plant an account or a certificate key of its own, or remove
    // ours (a sticky bit does not stop planting).
    let foreign_writers =
        facts.mode & 0o002 != 0 || (facts.mode & 0o020 != 0 && !in_my_groups(facts.group));
    if foreign_writers {
        return Err(Error::StateDirWritable {
            path: dir.to_owned(),
        });
    }
    Ok(())
}

/// A certificate and its key, verified.
#[derive(Clone, PartialEq, Eq)]
pub struct Stored {
    /// PEM chain, leaf first.
    pub chain_pem: String,
    /// PEM private key.
    pub key_pem: String,
    /// Validity and issuer.
    pub info: CertInfo,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SECURITY: the key stays out of logs (in a pair it is a secret of both nodes).
        f.debug_struct("Stored")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The directory of a name set: its first name (readable) and a digest of all of them (a
/// changed set is another certificate).
pub(crate) fn dir(state_dir: &Path, names: &[String]) -> PathBuf {
    let digest = Sha256::digest(names.join("\n").as_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let first = names
        .first()
        .map_or("cert", String::as_str)
        .replace('*', "_");
    state_dir
        .join("acme")
        .join("certs")
        .join(format!("{first}-{tag}"))
}

/// Where a certificate was ordered and how: the directory, key type and profile. A stored
/// certificate ordered otherwise is not served: switching from `letsencrypt-staging` to
/// `letsencrypt` would else keep the untrusted staging certificate until its renewal.
pub(crate) fn origin(settings: &AcmeSettings) -> String {
    format!(
        "{} {:?} {}\n",
        settings.directory,
        settings.key_type,
        settings.profile.as_deref().unwrap_or("-")
    )
}

/// The stored certificate for `names`, if one is there, was ordered as `origin` says (or
/// before origins were kept) and still verifies at `now`.
pub(crate) fn load(dir: &Path, names: &[String], origin: &str, now: SystemTime) -> Option<Stored> {
    if let Ok(stored) = std::fs::read_to_string(dir.join("origin.txt"))
        && stored != origin
    {
        tracing::info!(
            "{}: ordered from another directory or with another key type or profile; a new certificate will be ordered",
            dir.display()
        );
        return None;
    }
    let chain_pem = std::fs::read_to_string(dir.join("chain.pem")).ok()?;
    let key_pem = std::fs::read_to_string(dir.join("key.pem")).ok()?;
    let checked = rcgen::KeyPair::from_pem(&key_pem)
        .map_err(|e| Error::Verify(format!("key.pem does not parse ({e})")))
        .and_then(|key| {
            verify(
                &chain_pem,
                names,
                &rcgen::PublicKeyData::subject_public_key_info(&key),
                now,
            )
        });
    match checked {
        Ok(info) => Some(Stored {
            chain_pem,
            key_pem,
            info,
        }),
        Err(e) => {
            tracing::warn!("{}: {e}; a new certificate will be ordered", dir.display());
            None
        }
    }
}

/// Writes a certificate: the key first (0600), then the chain, then its origin.
pub(crate) fn save(dir: &Path, cert: &Stored, origin: &str) -> Result<(), Error> {
    write_atomic(&dir.join("key.pem"), cert.key_pem.as_bytes(), 0o600)?;
    write_atomic(&dir.join("chain.pem"), cert.chain_pem.as_bytes(), 0o644)?;
    write_atomic(&dir.join("origin.txt"), origin.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_state_directory_another_user_could_write_or_repoint_is_refused() {
        const ME: u32 = 1000;
        const OTHER: u32 = 65534;
        const MY_GROUP: u32 = 1000;
        const OTHER_GROUP: u32 = 100;
        let facts = |link_owner, owner, is_dir, mode, group| DirFacts {
            link_owner,
            owner,
            is_dir,
            mode,
            group,
        };
        // (case, facts, refusal: the variant's name and what it names)
        #[rustfmt::skip]
        let table = [
            ("mine, 0700", facts(None, ME, true, 0o700, MY_GROUP), None),
            ("mine, 0755", facts(None, ME, true, 0o755, OTHER_GROUP), None),
            ("root's", facts(None, 0, true, 0o755, 0), None),
            ("my link to root's", facts(Some(ME), 0, true, 0o700, 0), None),
            ("group-writable, my group", facts(None, ME, true, 0o770, MY_GROUP), None),
            ("another user's", facts(None, OTHER, true, 0o700, MY_GROUP), Some("owner directory 65534")),
            ("another user's link to mine", facts(Some(OTHER), ME, true, 0o700, MY_GROUP), Some("owner link 65534")),
            ("another user's link to another user's", facts(Some(OTHER), OTHER, true, 0o700, MY_GROUP), Some("owner link 65534")),
            ("root's link to mine", facts(Some(0), ME, true, 0o700, MY_GROUP), None),
            ("my link to another user's", facts(Some(ME), OTHER, true, 0o700, MY_GROUP), Some("owner directory 65534")),
            ("another user's file", facts(None, OTHER, false, 0o600, MY_GROUP), Some("owner directory 65534")),
            ("a file", facts(None, ME, false, 0o600, MY_GROUP), Some("not a directory")),
            ("world-writable", facts(None, ME, true, 0o777, MY_GROUP), Some("writable")),
            ("world-writable, sticky (/tmp)", facts(None, 0, true, 0o1777, 0), Some("writable")),
            ("world-writable only", facts(None, ME, true, 0o702, MY_GROUP), Some("writable")),
            ("group-writable, another group", facts(None, ME, true, 0o770, OTHER_GROUP), Some("writable")),
            ("group-readable, another group", facts(None, ME, true, 0o750, OTHER_GROUP), None),
        ];
        let path = Path::new("/var/lib/labgate");
        for (case, facts, refused) in table {
            let got = check_state_dir(path, &facts, ME, &|g| g == MY_GROUP);
            let got = match &got {
                Ok(()) => None,
                Err(Error::StateDirOwner {
                    what, owner, me, ..
                }) => {
                    assert_eq!(*me, ME, "{case}");
                    Some(format!("owner {what} {owner}"))
                }
                Err(Error::StateDirNotADirectory { .. }) => Some("not a directory".into()),
                Err(Error::StateDirWritable { .. }) => Some("writable".into()),
                Err(e) => panic!("{case}: {e}"),
            };
            assert_eq!(got.as_deref(), refused, "{case}");
        }
    }

    #[test]
    fn the_state_directory_is_made_private_and_checked_on_disk() {
        let tmp = tempfile::tempdir().expect("dir");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777;
        let new = tmp.path().join("a/b/state");
        prepare_state_dir(&new).expect("made");
        assert_eq!(mode(&new), 0o700);
        prepare_state_dir(&new).expect("checked again");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&new, &link).expect("link");
        prepare_state_dir(&link).expect("my link to my directory");
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = prepare_state_dir(&new).expect_err("world-writable");
        assert!(
            e.to_string()
                .contains(&format!("run `chmod o-w,g-w {}`", new.display())),
            "{e}"
        );
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let file = tmp.path().join("file");
        std::fs::write(&file, "").expect("file");
        let e = prepare_state_dir(&file).expect_err("a file");
        assert!(matches!(e, Error::StateDirNotADirectory { .. }), "{e}");
        let e = prepare_state_dir(&file.join("state")).expect_err("under a file");
        assert!(
            e.to_string().starts_with(&format!(
                "cannot create the state directory {}",
                file.join("state").display()
            )),
            "{e}"
        );
    }

    #[test]
    fn a_certificate_ordered_elsewhere_is_not_served() {
        let dir = tempfile::tempdir().expect("dir");
        let names = vec!["app.lab.example.com".to_owned()];
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(names.clone())
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("leaf");
        std::fs::write(dir.path().join("chain.pem"), leaf.pem() + &ca_pem).expect("chain");
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("key");
        let staging = "https://acme-staging-v02.api.letsencrypt.org/directory EcdsaP256 -\n";
        let production = "https://acme-v02.api.letsencrypt.org/directory EcdsaP256 -\n";
        let now = SystemTime::now();
        // Saved before origins were kept: served.
        assert!(load(dir.path(), &names, production, now).is_some());
        std::fs::write(dir.path().join("origin.txt"), staging).expect("origin");
        assert!(load(dir.path(), &names, staging, now).is_some());
        assert!(load(dir.path(), &names, production, now).is_none());
    }
}
