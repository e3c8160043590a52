//! systemd's file descriptor store (`sd_notify(3)` `FDSTORE=1`, `sd_listen_fds(3)`): every
//! listening socket outlives the process, so `systemctl restart labgate` (and a restart after
//! a crash) loses no query and refuses no connection. Once serving, labgate sends systemd a
//! duplicate of each listener, named after what it serves (`FDNAME=`); systemd keeps them
//! while the service restarts and hands them to the next process (`LISTEN_FDS`,
//! `LISTEN_FDNAMES`), which serves on them as on an upgrade's ([`crate::upgrade`]).
//! Meanwhile the kernel queues datagrams and connections on those sockets: the restart costs
//! latency, not answers. Listeners the configuration no longer names are taken out of the
//! store (`FDSTOREREMOVE=1`).
//!
//! Needs `FileDescriptorStoreMax=` in the unit. systemd 254 and later say how many it keeps
//! in `$FDSTORE` (nothing is sent when that is 0); earlier ones say nothing, so labgate sends
//! anyway, and a unit without a store logs that it kept none.

use std::os::fd::AsFd;

use crate::notify::Notifier;
use crate::upgrade::{Entry, Handover, Inherited};

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: i32 = 3;

/// The `FDNAME=` of a listener: its entry with `:` (which names may not hold) as `+` and the
/// space as `@`, e.g. `dns-udp@127.0.0.1+53`. Pure.
pub fn name(entry: &Entry) -> String {
    entry.to_string().replace(':', "+").replace(' ', "@")
}

/// The entry a name made by [`name`] stands for; `None` for any other name. Pure.
pub fn parse(name: &str) -> Option<Entry> {
    Entry::parse(&name.replace('+', ":").replace('@', " "))
}

/// One descriptor systemd passed: its number, its name, and the entry the name stands for
/// (`None`: not a name labgate gives).
pub type Listed = (i32, String, Option<Entry>);

/// The descriptors systemd passed this process (`me`), from `LISTEN_PID`, `LISTEN_FDS` and
/// `LISTEN_FDNAMES`: none when they are for another process. Pure.
pub fn listed(pid: Option<&str>, fds: Option<&str>, names: Option<&str>, me: u32) -> Vec<Listed> {
    if pid.and_then(|p| p.parse::<u32>().ok()) != Some(me) {
        return Vec::new();
    }
    let count = fds
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0)
        .clamp(0, 4096);
    let mut names = names.unwrap_or_default().split(':');
    (0..count)
        .map(|i| {
            let n = names.next().unwrap_or("unknown").to_owned();
            let entry = parse(&n);
            (FIRST_FD + i, n, entry)
        })
        .collect()
}

/// What systemd passed this process: the listeners taken, and the store's names to remove
/// (descriptors whose name is not one labgate gives, or all of them when they could not be
/// taken).
#[derive(Debug, Default)]
pub struct Passed {
    /// The listeners, to adopt where the configuration still names them.
    pub inherited: Inherited,
    /// Names to take out of the store: labgate binds those addresses anew.
    pub remove: Vec<String>,
}

/// The listeners systemd kept for this process, if it passed any.
///
/// Each is taken as a duplicate (`pidfd_getfd`: the unit's `SystemCallFilter=` must allow
/// it), and the descriptor systemd passed is closed. When they cannot be taken (a system call
/// filter without it, a kernel before 5.6), every passed descriptor is closed and named in
/// [`Passed::remove`], and the error is logged: labgate binds anew and the store is emptied,
/// so no address is served by one socket while another one nobody reads holds half of it.
pub fn inherit() -> Passed {
    let var = |k: &str| std::env::var(k).ok();
    let passed = listed(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    );
    let mut out = Passed::default();
    if passed.is_empty() {
        return out;
    }
    let mut taken = Vec::new();
    let mut failed = None;
    for (fd, _, entry) in &passed {
        if let (Some(entry), None) = (entry, &failed) {
            match take(*fd) {
                Ok(owned) => taken.push((*entry, owned)),
                Err(e) => failed = Some(e),
            }
        }
    }
    // The descriptors systemd passed are closed: each socket lives on in its duplicate, or
    // not at all. No owned descriptor in this process has these numbers: they have been in
    // use since exec, so nothing opened since could get them, and nothing wrapped them.
    for (fd, _, _) in &passed {
        let _ = nix::unistd::close(*fd);
    }
    let count = passed.len();
    out.remove = passed
        .into_iter()
        .filter(|(_, _, e)| e.is_none() || failed.is_some())
        .map(|(_, n, _)| n)
        .collect();
    match failed {
        None => out.inherited = Inherited::new(taken),
        Some(e) => tracing::error!(
            "systemd kept {} listening sockets, but they cannot be taken ({e}): allow \
             `pidfd_getfd` in the unit's SystemCallFilter= (deploy/labgate.service does); \
             they are closed and bound anew, and what arrived in between is lost",
            count
        ),
    }
    out
}

/// A duplicate of this process's descriptor `fd`, owned.
fn take(fd: i32) -> std::io::Result<std::os::fd::OwnedFd> {
    let me = rustix::process::pidfd_open(
        rustix::process::getpid(),
        rustix::process::PidfdFlags::empty(),
    )?;
    Ok(rustix::process::pidfd_getfd(
        &me,
        fd,
        rustix::process::PidfdGetfdFlags::empty(),
    )?)
}

/// Whether systemd keeps descriptors: unless `$FDSTORE` says it keeps none.
fn has_store() -> bool {
    std::env::var("FDSTORE").map_or(true, |n| n != "0")
}

/// Sends systemd a duplicate of every listener in `handover` to keep. systemd ignores a
/// socket it holds already.
pub fn store(notifier: &Notifier, handover: &Handover) {
    if !has_store() {
        return;
    }
    for (entry, fd) in handover.sockets() {
        let state = format!("FDSTORE=1\nFDNAME={}", name(entry));
        notifier.send_fd(&state, fd.as_fd());
    }
}

/// Takes the descriptors named `gone` (see [`name`]) out of systemd's store.
pub fn remove(notifier: &Notifier, gone: &[String]) {
    if !has_store() {
        return;
    }
    for n in gone {
        notifier.send(&format!("FDSTOREREMOVE=1\nFDNAME={n}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upgrade::Kind;

    #[test]
    fn names_hold_no_colon_and_read_back() {
        let entries = [
            Entry {
                kind: Kind::DnsUdp,
                at: "127.0.0.1:53".parse().expect("addr"),
            },
            Entry {
                kind: Kind::TunnelHttps,
                at: "[fd00::1]:8443".parse().expect("addr"),
            },
            Entry {
                kind: Kind::Admin,
                at: "[::]:0".parse().expect("addr"),
            },
        ];
        for e in entries {
            let n = name(&e);
            assert!(
                !n.contains(':') && !n.contains(' ') && n.len() <= 255,
                "{n}"
            );
            assert_eq!(parse(&n), Some(e), "{n}");
        }
        assert_eq!(name(&entries[0]), "dns-udp@127.0.0.1+53");
        assert_eq!(parse("stored"), None);
        assert_eq!(parse("dns-udp@nowhere"), None);
    }

    /// (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, descriptors and whether each is known)
    type Row<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        &'a [(i32, bool)],
    );

    #[test]
    fn only_descriptors_for_this_process_are_taken_with_their_names() {
        let udp = "dns-udp@127.0.0.1+53";
        let https = "https@[++]+443";
        let names = format!("{udp}:{https}:unknown");
        #[rustfmt::skip]
        let table: &[Row<'_>] = &[
            (Some("42"), Some("3"), Some(&names), &[(3, true), (4, true), (5, false)]),
            (Some("43"), Some("3"), Some(&names), &[]),
            (None, Some("3"), Some(&names), &[]),
            (Some("42"), None, Some(&names), &[]),
            (Some("42"), Some("2"), None, &[(3, false), (4, false)]),
            (Some("42"), Some("-1"), Some(&names), &[]),
            (Some("42"), Some("many"), Some(&names), &[]),
        ];
        for (pid, fds, n, want) in table {
            let got: Vec<(i32, bool)> = listed(*pid, *fds, *n, 42)
                .into_iter()
                .map(|(fd, _, e)| (fd, e.is_some()))
                .collect();
            assert_eq!(got, *want, "{pid:?} {fds:?} {n:?}");
        }
        let first = listed(Some("42"), Some("1"), Some(udp), 42);
        assert_eq!(
            (first[0].1.as_str(), first[0].2.map(|e| e.kind)),
            (udp, Some(Kind::DnsUdp))
        );
        let unnamed = listed(Some("42"), Some("2"), Some("stored"), 42);
        assert_eq!(unnamed[1].1, "unknown", "fewer names than descriptors");
    }
}
