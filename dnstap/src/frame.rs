//! Frame Streams control frames (the `fstrm` protocol that carries dnstap): the handshake a
//! writer makes on a bidirectional connection (READY, ACCEPT, START) and its end (STOP,
//! FINISH). Data frames are a big-endian length and a payload ([`crate::message::encode`]);
//! a control frame is a zero length (the escape), its own length, its type and its fields.

use std::io::{Read, Write};

/// The content type of dnstap's data frames.
pub const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";

/// The longest control frame accepted (the `fstrm` library's own bound).
pub const MAX_CONTROL: usize = 512;

/// The field of a control frame that names a content type.
const FIELD_CONTENT_TYPE: u32 = 1;

/// Kinds of control frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// The reader accepts one of the content types the writer offered.
    Accept = 1,
    /// The writer starts sending data frames.
    Start = 2,
    /// The writer sends no more.
    Stop = 3,
    /// The writer offers content types.
    Ready = 4,
    /// The reader acknowledges a STOP.
    Finish = 5,
}

/// What is wrong with a control frame a collector sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A data frame where a control frame belongs.
    #[error("the collector sent data where a control frame belongs")]
    NotControl,
    /// Longer than [`MAX_CONTROL`].
    #[error("the collector's control frame is {0} bytes long, more than 512")]
    TooLong(usize),
    /// Shorter than its type, or a field longer than the frame.
    #[error("the collector's control frame is cut short")]
    Short,
    /// A type Frame Streams does not define.
    #[error("the collector sent control frame type {0}, which Frame Streams does not define")]
    UnknownType(u32),
    /// Another control frame than the one the handshake expects.
    #[error("the collector sent {got:?} where {want:?} belongs")]
    Unexpected {
        /// The one that came.
        got: Control,
        /// The one expected.
        want: Control,
    },
    /// The collector does not take dnstap.
    #[error(
        "the collector does not accept `protobuf:dnstap.Dnstap`; point `[dnstap]` at a dnstap \
         collector"
    )]
    ContentType,
}

/// Appends a control frame of kind `c`, with the dnstap content type when it takes one.
pub fn control(c: Control, out: &mut Vec<u8>) {
    let typed = matches!(c, Control::Accept | Control::Start | Control::Ready);
    let fields = if typed { 8 + CONTENT_TYPE.len() } else { 0 };
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&(4 + fields as u32).to_be_bytes());
    out.extend_from_slice(&(c as u32).to_be_bytes());
    if typed {
        out.extend_from_slice(&FIELD_CONTENT_TYPE.to_be_bytes());
        out.extend_from_slice(&(CONTENT_TYPE.len() as u32).to_be_bytes());
        out.extend_from_slice(CONTENT_TYPE);
    }
}

/// Reads a control frame's type and whether it names dnstap's content type (or names none)
/// from its bytes after the escape and length. Unknown fields are skipped.
///
/// # Errors
/// When the bytes are not a control frame.
pub fn parse(frame: &[u8]) -> Result<(Control, bool), FrameError> {
    let word = |b: &[u8], at: usize| {
        b.get(at..at + 4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .ok_or(FrameError::Short)
    };
    let kind = match word(frame, 0)? {
        1 => Control::Accept,
        2 => Control::Start,
        3 => Control::Stop,
        4 => Control::Ready,
        5 => Control::Finish,
        t => return Err(FrameError::UnknownType(t)),
    };
    let (mut at, mut types, mut ours) = (4, 0, false);
    while at < frame.len() {
        let field = word(frame, at)?;
        let len = word(frame, at + 4)? as usize;
        let value = frame
            .get(at + 8..)
            .and_then(|r| r.get(..len))
            .ok_or(FrameError::Short)?;
        if field == FIELD_CONTENT_TYPE {
            types += 1;
            ours |= value == CONTENT_TYPE;
        }
        at += 8 + len;
    }
    Ok((kind, types == 0 || ours))
}

/// Reads the next control frame from `r`, which must be `want` and (for ACCEPT) take dnstap.
///
/// # Errors
/// On a read error, or a frame that is not the one expected.
pub fn expect(r: &mut impl Read, want: Control) -> std::io::Result<()> {
    let mut head = [0u8; 8];
    r.read_exact(&mut head)?;
    let invalid = |e: FrameError| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    if head[..4] != [0; 4] {
        return Err(invalid(FrameError::NotControl));
    }
    let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if len > MAX_CONTROL {
        return Err(invalid(FrameError::TooLong(len)));
    }
    let mut frame = [0u8; MAX_CONTROL];
    r.read_exact(&mut frame[..len])?;
    match parse(&frame[..len]).map_err(invalid)? {
        (got, _) if got != want => Err(invalid(FrameError::Unexpected { got, want })),
        (Control::Accept, false) => Err(invalid(FrameError::ContentType)),
        _ => Ok(()),
    }
}

/// Sends control frame `c` to `w`.
///
/// # Errors
/// On a write error.
pub fn send(w: &mut impl Write, c: Control) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(16 + CONTENT_TYPE.len());
    control(c, &mut out);
    w.write_all(&out)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_frame_is_the_escape_its_length_its_type_and_the_content_type() {
        let mut out = Vec::new();
        control(Control::Ready, &mut out);
        let mut want = vec![0, 0, 0, 0, 0, 0, 0, 34, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 22];
        want.extend_from_slice(b"protobuf:dnstap.Dnstap");
        assert_eq!(out, want);
        let mut stop = Vec::new();
        control(Control::Stop, &mut stop);
        assert_eq!(stop, [0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 3]);
        assert_eq!(parse(&out[8..]), Ok((Control::Ready, true)));
    }

    #[test]
    fn control_frames_parse_by_table() {
        let field = |t: &[u8]| {
            let mut f = 1u32.to_be_bytes().to_vec();
            f.extend_from_slice(&(t.len() as u32).to_be_bytes());
            f.extend_from_slice(t);
            f
        };
        let accept = 1u32.to_be_bytes().to_vec();
        let with = |fields: &[Vec<u8>]| {
            let mut f = accept.clone();
            fields.iter().for_each(|x| f.extend_from_slice(x));
            f
        };
        let mut unknown_field = 9u32.to_be_bytes().to_vec();
        unknown_field.extend_from_slice(&[0, 0, 0, 2, 0xaa, 0xbb]);
        for (bytes, want) in [
            (with(&[]), Ok((Control::Accept, true))),
            (with(&[field(CONTENT_TYPE)]), Ok((Control::Accept, true))),
            (
                with(&[field(b"protobuf:other"), field(CONTENT_TYPE)]),
                Ok((Control::Accept, true)),
            ),
            (
                with(&[field(b"protobuf:other")]),
                Ok((Control::Accept, false)),
            ),
            (with(&[unknown_field.clone()]), Ok((Control::Accept, true))),
            (5u32.to_be_bytes().to_vec(), Ok((Control::Finish, true))),
            (vec![], Err(FrameError::Short)),
            (vec![0, 0, 1], Err(FrameError::Short)),
            (9u32.to_be_bytes().to_vec(), Err(FrameError::UnknownType(9))),
            // A field whose length runs past the frame.
            (
                with(&[vec![0, 0, 0, 1, 0, 0, 0, 50, b'x']]),
                Err(FrameError::Short),
            ),
            (
                with(&[vec![0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]]),
                Err(FrameError::Short),
            ),
            (with(&[vec![0, 0, 0, 1, 0, 0]]), Err(FrameError::Short)),
        ] {
            assert_eq!(parse(&bytes), want, "{bytes:?}");
        }
    }

    #[test]
    fn the_handshake_reads_only_the_frame_it_expects() {
        let frame = |c| {
            let mut v = Vec::new();
            control(c, &mut v);
            v
        };
        assert!(expect(&mut &frame(Control::Accept)[..], Control::Accept).is_ok());
        assert!(expect(&mut &frame(Control::Finish)[..], Control::Finish).is_ok());
        let wrong = expect(&mut &frame(Control::Finish)[..], Control::Accept).expect_err("refused");
        assert!(wrong.to_string().contains("Finish"), "{wrong}");
        // A data frame, an oversized frame, a short read.
        let data = [0, 0, 0, 5, 1, 2, 3, 4, 5];
        assert!(expect(&mut &data[..], Control::Accept).is_err());
        let long = [0, 0, 0, 0, 0, 0, 2, 1];
        let e = expect(&mut &long[..], Control::Accept).expect_err("refused");
        assert!(e.to_string().contains("513"), "{e}");
        assert!(expect(&mut &frame(Control::Accept)[..10], Control::Accept).is_err());
        // An ACCEPT of another content type only.
        let mut other = vec![0, 0, 0, 0, 0, 0, 0, 18, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 6];
        other.extend_from_slice(b"text:x");
        let e = expect(&mut &other[..], Control::Accept).expect_err("refused");
        assert!(e.to_string().contains("does not accept"), "{e}");
    }
}
