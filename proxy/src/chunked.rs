//! Finds where a chunked body ends without changing its bytes, so a backend's chunked
//! response passes through as it came and the connection stays reusable.

/// Longest chunk-size line accepted (size, extensions and CRLF).
const MAX_LINE: usize = 4096;

/// Position inside a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Chunked {
    state: State,
    /// Length of the line being read (size line or trailer field).
    line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Reading a chunk-size line; `size` so far and whether a digit was seen.
    #[default]
    SizeStart,
    Size {
        size: u64,
    },
    /// Extensions after `;`, up to CR.
    Extension {
        size: u64,
    },
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// Start of a trailer line (or the final empty line).
    TrailerStart,
    Trailer,
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// A chunked body is malformed: the backend connection cannot be trusted further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl Chunked {
    /// Whether the last chunk and the trailers have been seen.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes body bytes; returns how many belong to the body (all of `buf` unless the
    /// body ends inside it).
    ///
    /// # Errors
    /// [`Malformed`] for anything outside RFC 9112 §7.1.
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, Malformed> {
        self.feed_data(buf, |_| {})
    }

    /// [`feed`](Self::feed), telling `data` where each run of chunk data lies in `buf`: what
    /// a body without its chunked framing is made of (an HTTP/2 response's DATA).
    ///
    /// # Errors
    /// [`Malformed`] for anything outside RFC 9112 §7.1.
    pub fn feed_data(
        &mut self,
        buf: &[u8],
        mut data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<usize, Malformed> {
        let mut i = 0;
        while i < buf.len() {
            if let State::Data { left } = self.state {
                // Skip data in bulk.
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(buf.len() - i);
                data(i..i + take);
                i += take;
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { left }
                };
                continue;
            }
            let c = buf[i];
            i += 1;
            self.line += 1;
            if self.line > MAX_LINE {
                return Err(Malformed);
            }
            self.state = match (self.state, c) {
                (State::SizeStart, _) => State::Size {
                    size: u64::from(hex(c).ok_or(Malformed)?),
                },
                (State::Size { size }, b'\r') => State::SizeLf { size },
                (State::Size { size }, b';' | b' ' | b'\t') => State::Extension { size },
                (State::Size { size }, _) => {
                    let d = u64::from(hex(c).ok_or(Malformed)?);
                    State::Size {
                        size: size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(d))
                            .ok_or(Malformed)?,
                    }
                }
                (State::Extension { size }, b'\r') => State::SizeLf { size },
                (State::Extension { .. }, b'\n') => return Err(Malformed),
                (State::Extension { size }, _) => State::Extension { size },
                (State::SizeLf { size }, b'\n') => {
                    self.line = 0;
                    if size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data { left: size }
                    }
                }
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => {
                    self.line = 0;
                    State::SizeStart
                }
                (State::TrailerStart, b'\r') => State::TrailerLf { empty: true },
                (State::TrailerStart | State::Trailer, b'\n') => return Err(Malformed),
                (State::Trailer, b'\r') => State::TrailerLf { empty: false },
                (State::TrailerStart | State::Trailer, _) => State::Trailer,
                (State::TrailerLf { empty }, b'\n') => {
                    self.line = 0;
                    if empty {
                        self.state = State::Done;
                        return Ok(i);
                    }
                    State::TrailerStart
                }
                (State::Done, _) => return Ok(i - 1),
                _ => return Err(Malformed),
            };
        }
        Ok(i)
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(body: &[u8], step: usize) -> Result<(usize, bool), Malformed> {
        let mut c = Chunked::default();
        let mut used = 0;
        for part in body.chunks(step) {
            used += c.feed(part)?;
            if c.done() {
                break;
            }
        }
        Ok((used, c.done()))
    }

    #[test]
    fn finds_the_end_in_any_split() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in 1..body.len() {
            assert_eq!(
                feed_all(body, step),
                Ok((body.len() - 4, true)),
                "step {step}"
            );
        }
    }

    #[test]
    fn the_data_without_its_framing_in_any_split() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in 1..body.len() {
            let mut c = Chunked::default();
            let mut data = Vec::new();
            for part in body.chunks(step) {
                let used = c
                    .feed_data(part, |r| data.extend_from_slice(&part[r]))
                    .expect("well-formed");
                if c.done() {
                    assert_eq!(&part[used..], &b"NEXT"[..4.min(part.len() - used)]);
                    break;
                }
            }
            assert_eq!(data, b"hello0123456789", "step {step}");
        }
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            &b"g\r\n"[..],
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"ffffffffffffffffff\r\n",
            b"0\r\n\n",
        ] {
            assert_eq!(
                feed_all(bad, 1).map(|(_, d)| d).err(),
                Some(Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(feed_all(b"5\r\nhel", 3), Ok((6, false)));
    }
}
