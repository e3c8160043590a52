//! A new labgate binary takes over without a lost query or a failed request. On SIGUSR2 the
//! running process starts the binary at its own path (the new one, once installed over it)
//! with the same arguments, and hands it every listening socket over a Unix socket in the
//! state directory (`SCM_RIGHTS`). The new process loads and checks its configuration, serves
//! on those very sockets (binding only addresses that are new), and says `ready`; then the old
//! one drains as on SIGTERM and exits. Both accept from the same sockets meanwhile, so the
//! kernel's queues lose nothing. A new binary that fails (a bad configuration, an address it
//! cannot bind, a crash) never says `ready`: the old one keeps serving and says why.
//!
//! ```text
//! old: SIGUSR2 ─ listen upgrade.sock ─ spawn new ─ accept ─ send manifest + fds ─ wait ─┐
//! new:                          connect ─ receive ─ bind the rest ─ serve ─ "ready" ─────┘
//! old: drain, exit                                   new: MAINPID= + READY=1 to systemd
//! ```

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// The environment variable that names the old process's socket to a new one.
pub const FROM_ENV: &str = "LABGATE_UPGRADE_FROM";
/// The socket's file name in the state directory.
pub const SOCKET: &str = "upgrade.sock";
/// Descriptors sent in one message (the kernel takes up to 253).
const PER_MESSAGE: usize = 64;
/// The longest manifest line: a kind and an address.
const LINE: usize = 64;

/// What a listening socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The admin endpoint.
    Admin,
    /// DNS over UDP (one of a `SO_REUSEPORT` group).
    DnsUdp,
    /// DNS over TCP.
    DnsTcp,
    /// DNS over TLS.
    DnsTls,
    /// HTTPS.
    Https,
    /// Plain HTTP.
    Http,
    /// The tunnel origin over HTTP.
    Tunnel,
    /// The tunnel origin over HTTPS.
    TunnelHttps,
}

impl Kind {
    const ALL: [Self; 8] = [
        Self::Admin,
        Self::DnsUdp,
        Self::DnsTcp,
        Self::DnsTls,
        Self::Https,
        Self::Http,
        Self::Tunnel,
        Self::TunnelHttps,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::DnsUdp => "dns-udp",
            Self::DnsTcp => "dns-tcp",
            Self::DnsTls => "dns-tls",
            Self::Https => "https",
            Self::Http => "http",
            Self::Tunnel => "tunnel",
            Self::TunnelHttps => "tunnel-https",
        }
    }
}

/// One socket handed over: what it serves and the address the configuration named for it (a
/// port 0 stays 0: the new process, started with the same arguments, names it the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// What it serves.
    pub kind: Kind,
    /// The configured address.
    pub at: SocketAddr,
}

impl Entry {
    fn line(&self) -> String {
        format!("{self}\n")
    }

    /// An entry from its manifest line. Pure.
    pub fn parse(line: &str) -> Option<Self> {
        let (kind, at) = line.trim_end().split_once(' ')?;
        Some(Self {
            kind: Kind::ALL.into_iter().find(|k| k.name() == kind)?,
            at: at.parse().ok()?,
        })
    }
}

/// The sockets a process holds for a successor: duplicates of its listeners, kept from
/// start-up (the originals go to the services that serve them).
#[derive(Debug, Default)]
pub struct Handover {
    sockets: Vec<(Entry, OwnedFd)>,
}

impl Handover {
    /// Keeps a duplicate of `socket`, configured as `at` to serve `kind`.
    ///
    /// # Errors
    /// When the descriptor cannot be duplicated.
    pub fn keep(&mut self, kind: Kind, at: SocketAddr, socket: &impl AsFd) -> std::io::Result<()> {
        let fd = socket.as_fd().try_clone_to_owned()?;
        self.sockets.push((Entry { kind, at }, fd));
        Ok(())
    }

    /// Every socket kept, with what it serves.
    pub fn sockets(&self) -> impl Iterator<Item = (&Entry, &OwnedFd)> {
        self.sockets.iter().map(|(e, fd)| (e, fd))
    }

    /// Sends every socket to `to`, at most [`PER_MESSAGE`] a message, each message's bytes
    /// the manifest lines of its descriptors, the last followed by an empty line.
    ///
    /// # Errors
    /// When a message cannot be sent.
    pub fn send(&self, to: &UnixStream) -> std::io::Result<()> {
        let chunks: Vec<&[(Entry, OwnedFd)]> = self.sockets.chunks(PER_MESSAGE).collect();
        let last = chunks.len();
        for (i, chunk) in chunks.iter().enumerate() {
            let mut text: String = chunk.iter().map(|(e, _)| e.line()).collect();
            if i + 1 == last {
                text.push('\n');
            }
            let fds: Vec<_> = chunk.iter().map(|(_, fd)| fd.as_fd()).collect();
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(PER_MESSAGE))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            control.push(SendAncillaryMessage::ScmRights(&fds));
            rustix::net::sendmsg(
                to,
                &[IoSlice::new(text.as_bytes())],
                &mut control,
                SendFlags::empty(),
            )?;
        }
        if last == 0 {
            (&*to).write_all(b"\n")?;
        }
        Ok(())
    }
}

/// The sockets a new process received, taken by what it serves.
#[derive(Debug, Default)]
pub struct Inherited {
    sockets: Vec<(Entry, OwnedFd)>,
}

impl Inherited {
    /// Sockets received some other way (systemd's descriptor store).
    pub fn new(sockets: Vec<(Entry, OwnedFd)>) -> Self {
        Self { sockets }
    }

    /// Receives the old process's sockets from `from` (see [`Handover::send`]).
    ///
    /// # Errors
    /// When the connection fails, or a message's lines and descriptors do not pair up.
    pub fn receive(from: &UnixStream) -> std::io::Result<Self> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let mut sockets = Vec::new();
        loop {
            let mut bytes = [0u8; PER_MESSAGE * LINE + 1];
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(PER_MESSAGE))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let got = rustix::net::recvmsg(
                from,
                &mut [IoSliceMut::new(&mut bytes)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )?;
            if got.bytes == 0 {
                return Err(bad("the old process closed the connection midway"));
            }
            let mut fds = Vec::new();
            for m in control.drain() {
                if let RecvAncillaryMessage::ScmRights(received) = m {
                    fds.extend(received);
                }
            }
            let text = std::str::from_utf8(&bytes[..got.bytes])
                .map_err(|_| bad("a manifest that is not text"))?;
            let end = text.ends_with("\n\n") || text == "\n";
            let entries: Vec<Entry> = text
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| Entry::parse(l).ok_or_else(|| bad("a manifest line it cannot read")))
                .collect::<Result<_, _>>()?;
            if entries.len() != fds.len() {
                return Err(bad("a manifest whose lines and sockets do not pair up"));
            }
            sockets.extend(entries.into_iter().zip(fds));
            if end {
                return Ok(Self { sockets });
            }
        }
    }

    /// Takes every socket inherited for `kind` at `at`.
    pub fn take(&mut self, kind: Kind, at: SocketAddr) -> Vec<OwnedFd> {
        let (mine, rest) = std::mem::take(&mut self.sockets)
            .into_iter()
            .partition(|(e, _)| e.kind == kind && e.at == at);
        self.sockets = rest;
        mine.into_iter().map(|(_, fd)| fd).collect()
    }

    /// Closes the sockets nobody took (addresses the configuration no longer names) and says
    /// which they were.
    pub fn close_left(self) -> Vec<Entry> {
        self.sockets.into_iter().map(|(e, _)| e).collect()
    }
}

/// The new process's side: connects to the old one named by [`FROM_ENV`], if any, and
/// receives its sockets; the connection is kept to say `ready` on ([`ready`]).
///
/// # Errors
/// When the variable is set but the hand-over fails: the new process must not bind the
/// addresses the old one serves.
pub fn inherit() -> std::io::Result<Option<(UnixStream, Inherited)>> {
    let Some(path) = std::env::var_os(FROM_ENV) else {
        return Ok(None);
    };
    let stream = UnixStream::connect(&path)?;
    let inherited = Inherited::receive(&stream)?;
    Ok(Some((stream, inherited)))
}

/// Tells the old process that this one serves: it drains and exits.
///
/// # Errors
/// When the old process is gone.
pub fn ready(to: &mut UnixStream) -> std::io::Result<()> {
    to.write_all(b"ready\n")
}

/// The old process's side of an upgrade: starts the binary at `exe` with `args`, hands it
/// `handover` over `<state_dir>/upgrade.sock`, and waits for its `ready`. `Ok` once the new
/// process serves (this one should then drain and exit); an error says why this one keeps
/// serving.
///
/// # Errors
/// When the new process cannot be started, fails before it serves, or takes longer than
/// `wait`.
pub fn hand_over(
    handover: &Handover,
    (exe, args): (&Path, &[std::ffi::OsString]),
    state_dir: &Path,
    wait: std::time::Duration,
) -> anyhow::Result<u32> {
    use anyhow::Context;
    let path = state_dir.join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {} for the new process", path.display()))?;
    let _cleanup = Remove(path.clone());
    let child = std::process::Command::new(exe)
        .args(args)
        .env(FROM_ENV, &path)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let pid = child.id();
    // Until it says `ready`, a new process that is given up on is killed and reaped: it must
    // not go on serving beside this one.
    let mut child = Unless(Some(child));
    let child_now = |c: &mut Unless| c.0.as_mut().map(std::process::Child::try_wait);
    // The child connects at once (before it binds anything); a child that exits first failed.
    listener.set_nonblocking(true)?;
    let deadline = tokio::time::Instant::now() + wait;
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).context("the new process's connection failed"),
        }
        if let Some(Ok(Some(status))) = child_now(&mut child) {
            anyhow::bail!("the new process exited ({status}) before it asked for the sockets");
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the new process did not connect within {wait:?}"
        );
        std::thread::park_timeout(std::time::Duration::from_millis(20));
    };
    stream.set_nonblocking(false)?;
    handover
        .send(&stream)
        .context("cannot hand the sockets over")?;
    stream.set_read_timeout(Some(wait))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .context("no word from the new process")?;
    if line.trim_end() != "ready" {
        // It closed the connection: it failed (its error is in the log), or was killed.
        let status = match child_now(&mut child) {
            Some(Ok(Some(s))) => s.to_string(),
            _ => "still running: stopped now".to_owned(),
        };
        anyhow::bail!(
            "the new process stopped before it served ({status}); its error is above in the log"
        );
    }
    // The new process outlives this one: it is let go, neither waited for nor killed.
    child.0 = None;
    Ok(pid)
}

/// A new process killed and reaped when dropped, unless let go (`None`).
struct Unless(Option<std::process::Child>);

impl Drop for Unless {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The binary at `exe`'s path (what `/proc/self/exe` names): after a new binary was installed
/// over the running one, the kernel names the old file `<path> (deleted)`; the new one is at
/// `<path>`. Pure.
pub fn binary_path(exe: PathBuf) -> PathBuf {
    match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(path) => PathBuf::from(path),
        None => exe,
    }
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.at)
    }
}

/// Removes a file when dropped.
struct Remove(PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests;
