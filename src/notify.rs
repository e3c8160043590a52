//! systemd's service notifications (`sd_notify(3)`): `READY=1` once labgate serves,
//! `STOPPING=1` when it starts to stop, `STATUS=` lines, and `WATCHDOG=1` while its data plane
//! answers (the self-check). Each is a datagram to `$NOTIFY_SOCKET` (a path, or `@name` in
//! the abstract namespace); without that variable (not under systemd's `Type=notify`) nothing
//! is sent. Best effort: a notification that cannot be sent is logged at debug.

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use std::time::Duration;

/// Where notifications go.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` names, if any.
    pub fn from_env() -> Option<Self> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        Self::at(path.as_encoded_bytes())
            .map_err(|e| tracing::warn!("NOTIFY_SOCKET cannot be used ({e}): no notifications"))
            .ok()
    }

    /// A notifier to the socket `path` names (a path, or `@name`).
    ///
    /// # Errors
    /// When `path` is neither, or no socket can be made.
    pub fn at(path: &[u8]) -> std::io::Result<Self> {
        Ok(Self {
            to: address(path)?,
            socket: UnixDatagram::unbound()?,
        })
    }

    /// Sends `state` (newline-separated `KEY=value` lines).
    pub fn send(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.to) {
            tracing::debug!("systemd notification `{state}` not sent: {e}");
        }
    }

    /// Sends `state` with the descriptor `fd` (`FDSTORE=1`).
    pub fn send_fd(&self, state: &str, fd: BorrowedFd<'_>) {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds = [fd];
        control.push(SendAncillaryMessage::ScmRights(&fds));
        let sent = unix_address(&self.to).and_then(|to| {
            rustix::net::sendmsg_addr(
                &self.socket,
                &to,
                &[IoSlice::new(state.as_bytes())],
                &mut control,
                SendFlags::empty(),
            )
            .map_err(std::io::Error::from)
        });
        if let Err(e) = sent {
            tracing::warn!("systemd notification `{state}` not sent: {e}");
        }
    }
}

/// `to` as rustix names it, for a message with descriptors.
fn unix_address(to: &SocketAddr) -> std::io::Result<rustix::net::SocketAddrUnix> {
    use std::os::linux::net::SocketAddrExt;
    let made = match (to.as_pathname(), to.as_abstract_name()) {
        (Some(path), _) => rustix::net::SocketAddrUnix::new(path),
        (None, Some(name)) => rustix::net::SocketAddrUnix::new_abstract_name(name),
        (None, None) => return Err(std::io::ErrorKind::InvalidInput.into()),
    };
    made.map_err(std::io::Error::from)
}

/// The socket address of `$NOTIFY_SOCKET`'s bytes: `@` starts an abstract name.
fn address(bytes: &[u8]) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    match bytes.split_first() {
        Some((b'@', name)) => SocketAddr::from_abstract_name(name),
        Some((b'/', _)) => SocketAddr::from_pathname(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes),
        ),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "neither an absolute path nor an @abstract name",
        )),
    }
}

/// systemd's watchdog interval for this process (`WATCHDOG_USEC`, when `WATCHDOG_PID` is
/// unset or `me`): pings must come more often than this. Pure.
pub fn watchdog(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if pid.is_some_and(|p| p.parse::<u32>().ok() != Some(me)) {
        return None;
    }
    let usec = usec?.parse::<u64>().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_interval_is_this_process_s() {
        let me = 4242;
        let cases = [
            (Some("30000000"), None, Some(Duration::from_secs(30))),
            (
                Some("30000000"),
                Some("4242"),
                Some(Duration::from_secs(30)),
            ),
            // Meant for another process (a child inherited the variables).
            (Some("30000000"), Some("17"), None),
            (Some("0"), None, None),
            (Some("soon"), None, None),
            (None, Some("4242"), None),
        ];
        for (usec, pid, want) in cases {
            assert_eq!(watchdog(usec, pid, me), want, "{usec:?} {pid:?}");
        }
    }

    #[test]
    fn notifications_reach_a_path_and_an_abstract_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier {
            socket: UnixDatagram::unbound().expect("socket"),
            to: address(path.as_os_str().as_encoded_bytes()).expect("a path"),
        };
        n.send("READY=1\nSTATUS=serving");
        let mut buf = [0u8; 64];
        let got = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..got], b"READY=1\nSTATUS=serving");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("labgate-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        let n = Notifier {
            socket: UnixDatagram::unbound().expect("socket"),
            to: address(format!("@{name}").as_bytes()).expect("an abstract name"),
        };
        n.send("WATCHDOG=1");
        let got = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..got], b"WATCHDOG=1");
        assert!(address(b"relative").is_err());
        assert!(address(b"").is_err());
    }
}
