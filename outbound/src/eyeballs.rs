//! Happy Eyeballs (RFC 8305): a host's addresses tried in an order that alternates address
//! families, each attempt given a head start before the next begins, so a dead address
//! (an IPv6 route that drops packets, a stale A record) costs a quarter of a second instead
//! of a connect timeout.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// How long an attempt has before the next one starts: RFC 8305 §5's recommended
/// Connection Attempt Delay.
pub(crate) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);
/// Longest one connection attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The order to try `ips` in (RFC 8305 §4): families alternate, starting with the family of
/// the first address (the resolver's preference), each family in its own order.
pub(crate) fn order(ips: &[IpAddr]) -> Vec<IpAddr> {
    let Some(first) = ips.first() else {
        return Vec::new();
    };
    let mut preferred = ips.iter().filter(|ip| ip.is_ipv6() == first.is_ipv6());
    let mut other = ips.iter().filter(|ip| ip.is_ipv6() != first.is_ipv6());
    let mut ordered = Vec::with_capacity(ips.len());
    loop {
        match (preferred.next(), other.next()) {
            (None, None) => return ordered,
            (a, b) => ordered.extend(a.into_iter().chain(b)),
        }
    }
}

/// A TCP connection to the first of `addrs` (in order) that takes one. An attempt starts
/// [`ATTEMPT_DELAY`] after the previous one, or as soon as it fails; the first to connect
/// wins and the others are dropped (RFC 8305 §5).
///
/// # Errors
/// The last attempt's error when none connects (`NotFound` when `addrs` is empty).
pub(crate) async fn connect(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut waiting = addrs.iter().copied();
    let mut attempts = JoinSet::new();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    if let Some(addr) = waiting.next() {
        attempts.spawn(attempt(addr));
    }
    loop {
        let more = waiting.len() > 0;
        tokio::select! {
            done = attempts.join_next() => {
                last = match done {
                    // A failed attempt starts the next, so none runs only when none is left.
                    None => return Err(last),
                    Some(Ok(Ok(tcp))) => return Ok(tcp),
                    Some(Ok(Err(e))) => e,
                    Some(Err(panicked)) => io::Error::other(panicked),
                };
                // A failed attempt hands its turn to the next at once.
                if let Some(addr) = waiting.next() {
                    attempts.spawn(attempt(addr));
                }
            }
            () = tokio::time::sleep(ATTEMPT_DELAY), if more => {
                if let Some(addr) = waiting.next() {
                    attempts.spawn(attempt(addr));
                }
            }
        }
    }
}

/// One connection attempt, bounded by [`ATTEMPT_TIMEOUT`].
async fn attempt(addr: SocketAddr) -> io::Result<TcpStream> {
    match tokio::time::timeout(ATTEMPT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(connected) => connected,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{addr} did not answer within {ATTEMPT_TIMEOUT:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &str) -> Vec<IpAddr> {
        list.split_whitespace()
            .map(|s| s.parse().expect("an address"))
            .collect()
    }

    #[test]
    fn families_alternate_from_the_first_address() {
        let table = [
            ("", ""),
            ("192.0.2.1", "192.0.2.1"),
            ("192.0.2.1 192.0.2.2", "192.0.2.1 192.0.2.2"),
            (
                "192.0.2.1 192.0.2.2 2001:db8::1 2001:db8::2",
                "192.0.2.1 2001:db8::1 192.0.2.2 2001:db8::2",
            ),
            (
                "2001:db8::1 192.0.2.1 192.0.2.2",
                "2001:db8::1 192.0.2.1 192.0.2.2",
            ),
            (
                "2001:db8::1 2001:db8::2 2001:db8::3 192.0.2.1",
                "2001:db8::1 192.0.2.1 2001:db8::2 2001:db8::3",
            ),
            (
                "192.0.2.1 2001:db8::1 192.0.2.2 192.0.2.3 2001:db8::2",
                "192.0.2.1 2001:db8::1 192.0.2.2 2001:db8::2 192.0.2.3",
            ),
        ];
        for (given, want) in table {
            assert_eq!(order(&ips(given)), ips(want), "{given}");
        }
    }
}
