//! DNS messages by hand: queries with exact bytes, and a strict reader that checks a response
//! is one whole message (every section as its counts say, not a byte more or less).

use std::net::UdpSocket;
use std::time::Duration;

/// Type A.
pub(crate) const A: u16 = 1;
/// Type TXT.
pub(crate) const TXT: u16 = 16;

/// A query for `name` (dotted, no final dot needed) and `qtype` with RD set; with an OPT
/// of `edns` bytes when given.
pub(crate) fn query(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    let additional = u8::from(edns.is_some());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, additional]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(u8::try_from(label.len()).expect("label length"));
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if let Some(size) = edns {
        q.extend_from_slice(&opt(size));
    }
    q
}

/// An OPT record advertising `size` bytes.
pub(crate) fn opt(size: u16) -> Vec<u8> {
    let mut o = vec![0, 0, 41];
    o.extend_from_slice(&size.to_be_bytes());
    o.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    o
}

/// What a strict read of a response found.
#[derive(Debug)]
pub(crate) struct Walked {
    pub(crate) id: u16,
    pub(crate) rcode: u8,
    pub(crate) truncated: bool,
    pub(crate) questions: u16,
    pub(crate) answers: u16,
    /// The OPT's UDP size, if the additional section has one.
    pub(crate) opt: Option<u16>,
}

/// Reads a whole response; an error when a section runs past the end or bytes are left over.
pub(crate) fn walk(msg: &[u8]) -> Result<Walked, String> {
    let header = msg.get(..12).ok_or("shorter than a header")?;
    let count = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let mut w = Walked {
        id: count(0),
        rcode: header[3] & 0x0f,
        truncated: header[2] & 0x02 != 0,
        questions: count(4),
        answers: count(6),
        opt: None,
    };
    if header[2] & 0x80 == 0 {
        return Err("QR not set".into());
    }
    let mut at = 12;
    for _ in 0..w.questions {
        at = skip_name(msg, at)? + 4;
    }
    let records = usize::from(count(6)) + usize::from(count(8)) + usize::from(count(10));
    let additional_from = usize::from(count(6)) + usize::from(count(8));
    for i in 0..records {
        at = skip_name(msg, at)?;
        let fixed = msg
            .get(at..at + 10)
            .ok_or_else(|| format!("record {i} cut at {at}"))?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let len = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        at += 10 + len;
        if at > msg.len() {
            return Err(format!("record {i}'s data runs past the end"));
        }
        if rtype == 41 && i >= additional_from {
            if w.opt.is_some() {
                return Err("two OPT records".into());
            }
            w.opt = Some(class);
        }
    }
    if at != msg.len() {
        return Err(format!(
            "{} extra bytes after the last record",
            msg.len() - at
        ));
    }
    Ok(w)
}

/// Where the name at `at` ends.
fn skip_name(msg: &[u8], mut at: usize) -> Result<usize, String> {
    loop {
        let len = *msg.get(at).ok_or_else(|| format!("name cut at {at}"))?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => return Ok(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

/// A UDP client bound to a source address.
pub(crate) struct Client(UdpSocket);

impl Client {
    /// A client sending from `ip` (e.g. a 127.0.0.x standing in for a VLAN).
    pub(crate) fn from(ip: &str) -> Self {
        Self(UdpSocket::bind((ip, 0)).expect("bind the client"))
    }

    /// Sends `query` to 127.0.0.1:`port`.
    pub(crate) fn send(&self, port: u16, query: &[u8]) {
        self.0.send_to(query, ("127.0.0.1", port)).expect("send");
    }

    /// The next datagram within `wait`.
    pub(crate) fn recv(&self, wait: Duration) -> Option<Vec<u8>> {
        self.0.set_read_timeout(Some(wait)).expect("timeout");
        let mut buf = vec![0u8; 65_535];
        let (n, _) = self.0.recv_from(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    /// Sends `query` and waits at most `wait` for the reply with its ID (others are skipped).
    pub(crate) fn ask(&self, port: u16, query: &[u8], wait: Duration) -> Option<Vec<u8>> {
        self.send(port, query);
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline
                .checked_duration_since(std::time::Instant::now())
                .filter(|d| !d.is_zero())?;
            let reply = self.recv(left)?;
            if reply.get(..2) == query.get(..2) {
                return Some(reply);
            }
        }
    }
}
