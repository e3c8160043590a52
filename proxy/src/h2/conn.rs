//! The server connection: frames in, events out; calls in, frames out (RFC 9113 §3-§6, §8).
//!
//! ```text
//!   socket bytes ──recv()──▶ Connection ──▶ Event (Request, Data, Trailers, Reset, ...)
//!   executor ──send_response() / send_data() / release() / reset()──▶ output() ──▶ socket
//! ```
//!
//! Stream states (§5.1), server side: a client HEADERS opens a stream (`idle → open`), the
//! client's END_STREAM half-closes it (`half-closed (remote)`), the server's END_STREAM
//! half-closes the other side; a stream closed both ways, or reset by either side, leaves
//! the table and its slot is reused. Streams not in the table with an id up to the highest
//! seen are closed; above it, idle.

use super::frame::{self, Header, flag, kind, setting};
use super::hpack::{Decoder, Encoder, HeaderList};
use super::request::{self, Fields, Meta, RequestHead};
use super::{ErrorCode, Limits, StreamId};

/// A connection error (RFC 9113 §5.4.1): the connection is unusable. A GOAWAY with
/// [`code`](Self::code) is already in the output; write it out, then close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// The peer broke the protocol (PROTOCOL_ERROR).
    #[error("http/2 protocol error: {0}")]
    Protocol(&'static str),
    /// A frame of a wrong size (FRAME_SIZE_ERROR).
    #[error("http/2 frame size error: {0}")]
    FrameSize(&'static str),
    /// The peer overran or overflowed a flow-control window (FLOW_CONTROL_ERROR).
    #[error("http/2 flow control error: {0}")]
    FlowControl(&'static str),
    /// A frame on a stream that ended (STREAM_CLOSED).
    #[error("http/2 stream closed: {0}")]
    StreamClosed(&'static str),
    /// A field block that does not decode (COMPRESSION_ERROR).
    #[error("http/2 compression error: {0}")]
    Compression(#[from] super::hpack::HpackError),
    /// The peer went over one of the [`Limits`] (ENHANCE_YOUR_CALM).
    #[error("http/2 peer over a limit: {0}")]
    Calm(&'static str),
}

impl ConnError {
    /// The GOAWAY error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Protocol(_) => ErrorCode::Protocol,
            Self::FrameSize(_) => ErrorCode::FrameSize,
            Self::FlowControl(_) => ErrorCode::FlowControl,
            Self::StreamClosed(_) => ErrorCode::StreamClosed,
            Self::Compression(_) => ErrorCode::Compression,
            Self::Calm(_) => ErrorCode::EnhanceYourCalm,
        }
    }
}

/// Why a send call was refused. Nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The stream is not open: it was never opened, was reset, or is closed.
    #[error("no such open http/2 stream")]
    UnknownStream,
    /// The call does not fit the stream's state (a second response head, data before the
    /// head, anything after the end).
    #[error("http/2 stream state does not allow this: {0}")]
    State(&'static str),
    /// A status HTTP/2 cannot carry (101, or outside 100-999), or END_STREAM on a 1xx.
    #[error("invalid http/2 response status")]
    Status,
    /// The output holds [`Limits::max_output`] bytes: write it out first.
    #[error("http/2 output buffer full")]
    Blocked,
    /// The connection failed.
    #[error("http/2 connection closed")]
    Closed,
}

/// What the connection reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A request head. The stream stays open for the response; with `end_stream` false the
    /// body follows as [`Event::Data`] and maybe [`Event::Trailers`].
    Request {
        /// The stream.
        stream: StreamId,
        /// Its validated head.
        head: RequestHead<'a>,
        /// No body follows.
        end_stream: bool,
    },
    /// A CONNECT or extended CONNECT (RFC 8441) request, which the core does not handle
    /// itself: refuse it with a response (e.g. 501) or [`Connection::reset`], or hand it on.
    Connect {
        /// The stream.
        stream: StreamId,
        /// Its validated head (`method` is CONNECT).
        head: RequestHead<'a>,
        /// No data follows.
        end_stream: bool,
    },
    /// A request whose field block went over [`Limits::max_header_list_size`] or
    /// [`Limits::max_fields`]: answer 431. Its body is discarded by the core, and the
    /// stream is reset with NO_ERROR once the response ends if the client is still sending.
    HeadersTooLarge {
        /// The stream.
        stream: StreamId,
    },
    /// Request body bytes. Call [`Connection::release`] once they are consumed: the peer
    /// gets window for more only then.
    Data {
        /// The stream.
        stream: StreamId,
        /// The bytes (may be empty with `end_stream`).
        data: &'a [u8],
        /// The body ends here.
        end_stream: bool,
    },
    /// Request trailers; the body ends with them.
    Trailers {
        /// The stream.
        stream: StreamId,
        /// The trailer fields.
        fields: Fields<'a>,
    },
    /// The stream is gone: the client reset it, or it broke the protocol and the core reset
    /// it. Stop working on it; its unreleased window was returned.
    Reset {
        /// The stream.
        stream: StreamId,
        /// The error code (the client's, or the one the core sent).
        code: ErrorCode,
    },
    /// A stream whose last [`Connection::send_data`] was short can take more.
    Capacity {
        /// The stream.
        stream: StreamId,
    },
    /// The client sent GOAWAY: it opens no more streams. Finish the open ones, then close
    /// when [`Connection::is_idle`].
    GoAway {
        /// The client's error code.
        code: ErrorCode,
    },
}

/// What one [`Connection::recv`] call did.
#[derive(Debug)]
pub struct Recv<'a> {
    /// Input bytes consumed; keep the rest and pass it again, with more appended.
    pub consumed: usize,
    /// The event, if one happened. `None`: the input holds no complete frame (read more),
    /// or the output is full (write it out, then call again).
    pub event: Option<Event<'a>>,
}

/// A sans-I/O HTTP/2 server connection.
///
/// Feed it the socket's bytes with [`recv`](Self::recv) until it returns no event, answer
/// the events with the send calls, and write [`output`](Self::output) to the socket,
/// [`advance`](Self::advance)ing by what was written. It allocates its buffers at creation
/// (the output buffer and the CONTINUATION buffer grow up to their bounds) and nothing per
/// request.
///
/// The input buffer must be able to hold a whole frame: [`Connection::MIN_INPUT`] bytes.
///
/// Timing is the executor's: the settings-ACK timeout, idle and read timeouts, and
/// closing after a GOAWAY or a [`ConnError`] once the output is written.
#[derive(Debug)]
pub struct Connection {
    limits: Limits,
    state: State,
    out: Vec<u8>,
    out_pos: usize,
    decoder: Decoder,
    encoder: Encoder,
    list: HeaderList,
    /// A field block spread over HEADERS and CONTINUATION frames.
    block: Vec<u8>,
    cont: Option<Continuation>,
    streams: Vec<Stream>,
    /// The highest client stream id seen.
    last_id: u32,
    /// The peer's SETTINGS_INITIAL_WINDOW_SIZE and SETTINGS_MAX_FRAME_SIZE.
    peer_window: u32,
    peer_max_frame: u32,
    /// Connection windows (§6.9): what we may send, what the peer may send, and bytes
    /// released but not yet given back in a WINDOW_UPDATE.
    send_window: i64,
    recv_window: i64,
    recv_unacked: u32,
    /// Budgets counted in events, never time (see [`Limits`]).
    resets: u32,
    flood: u32,
    /// ACKs queued since the writer last passed one, and where the last one ends (in bytes
    /// ever queued; `written` counts bytes ever written).
    control_backlog: u32,
    control_end: u64,
    written: u64,
    /// Some stream may have a Capacity event due.
    capacity_scan: bool,
    /// The last stream id our GOAWAY named.
    goaway_sent: Option<u32>,
    /// Recently closed streams, and whether we reset them (then late frames from the
    /// client are ignored, §5.1), oldest overwritten first.
    closed: [(u32, bool); CLOSED_KEPT],
    closed_next: usize,
    /// The request the last Request or Connect event describes.
    meta: Meta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Preface,
    FirstSettings,
    Open,
    Closed(ConnError),
}

/// What is known of a stream not in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gone {
    /// Never opened: its id is above the highest seen.
    Idle,
    /// We reset it, or it came after our GOAWAY: late frames are ignored.
    Reset,
    /// It ended, or was closed so long ago that we forgot how.
    Closed,
}

#[derive(Debug, Clone, Copy)]
struct Continuation {
    stream: u32,
    end_stream: bool,
    self_dependent: bool,
    frames: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// No final response head yet (1xx may have gone).
    Head,
    /// Head sent, body open.
    Body,
    /// END_STREAM sent.
    Done,
}

#[derive(Debug)]
struct Stream {
    id: u32,
    /// The client may still send on it (not half-closed (remote)).
    recv_open: bool,
    send: Reply,
    /// The executor got an event opening it, so it hears of its reset.
    announced: bool,
    /// A too-large request: the core consumes its body.
    discard: bool,
    recv_window: i64,
    /// Released by the executor, not yet in a WINDOW_UPDATE.
    unacked: u32,
    /// Delivered in Data events and not yet released.
    held: u32,
    send_window: i64,
    /// The last send_data was short: a Capacity event is due when it can take more.
    blocked: bool,
    content_length: Option<u64>,
    received: u64,
}

/// What recv found, without borrows (the event is built from it at the end).
#[derive(Debug, Clone, Copy)]
enum Pending {
    Request {
        stream: u32,
        end_stream: bool,
    },
    Connect {
        stream: u32,
        end_stream: bool,
    },
    TooLarge {
        stream: u32,
    },
    Data {
        stream: u32,
        start: usize,
        end: usize,
        end_stream: bool,
    },
    Trailers {
        stream: u32,
    },
    Reset {
        stream: u32,
        code: ErrorCode,
    },
    Capacity {
        stream: u32,
    },
    GoAway {
        code: ErrorCode,
    },
}

/// The largest frame payload we accept (our SETTINGS_MAX_FRAME_SIZE, the default).
const MAX_FRAME: u32 = frame::DEFAULT_MAX_FRAME_SIZE;
/// Our SETTINGS_HEADER_TABLE_SIZE (the default, so never sent): the peer's encoder may use
/// this much before it has seen our SETTINGS, so a smaller one would not be safe to enforce.
const TABLE_SIZE: usize = 4096;
/// Closed streams remembered, to tell late frames after our RST_STREAM (ignored) from
/// frames on streams that ended (errors).
const CLOSED_KEPT: usize = 32;
/// WINDOW_UPDATE increments below this cost the flood budget: they make us send tiny DATA
/// frames (CVE-2019-9511, "data dribble").
const TINY_WINDOW_UPDATE: u32 = 1024;

impl Connection {
    /// Bytes the caller's input buffer must be able to hold: a frame header and the largest
    /// payload we accept.
    pub const MIN_INPUT: usize = frame::HEADER_LEN + MAX_FRAME as usize;

    /// A connection awaiting the client preface; our SETTINGS (and a connection
    /// WINDOW_UPDATE) are already in the output, which the server may send at once.
    pub fn new(limits: Limits) -> Self {
        let mut limits = limits;
        limits.stream_window = limits
            .stream_window
            .clamp(frame::DEFAULT_WINDOW, frame::MAX_WINDOW);
        limits.connection_window = limits
            .connection_window
            .clamp(frame::DEFAULT_WINDOW, frame::MAX_WINDOW);
        limits.max_concurrent_streams = limits.max_concurrent_streams.max(1);
        // Room for a frame's worth of control output, or recv could never proceed.
        limits.max_output = limits.max_output.max(16 * 1024);
        let mut out = Vec::with_capacity(16 * 1024);
        let mut settings = [(0, 0); 5];
        let mut n = 0;
        for s in [
            (
                setting::MAX_CONCURRENT_STREAMS,
                limits.max_concurrent_streams,
            ),
            (setting::INITIAL_WINDOW_SIZE, limits.stream_window),
            (setting::MAX_HEADER_LIST_SIZE, limits.max_header_list_size),
            (setting::NO_RFC7540_PRIORITIES, 1),
            (
                setting::ENABLE_CONNECT_PROTOCOL,
                u32::from(limits.extended_connect),
            ),
        ] {
            if s.0 != setting::ENABLE_CONNECT_PROTOCOL || s.1 == 1 {
                settings[n] = s;
                n += 1;
            }
        }
        frame::write_settings(&mut out, &settings[..n]);
        if limits.connection_window > frame::DEFAULT_WINDOW {
            frame::write_window_update(
                &mut out,
                0,
                limits.connection_window - frame::DEFAULT_WINDOW,
            );
        }
        let max_list = limits.max_header_list_size as usize;
        Self {
            state: State::Preface,
            out,
            out_pos: 0,
            decoder: Decoder::new(TABLE_SIZE),
            encoder: Encoder::new(),
            list: HeaderList::new(max_list, limits.max_fields as usize, TABLE_SIZE),
            block: Vec::new(),
            cont: None,
            streams: Vec::with_capacity(limits.max_concurrent_streams as usize),
            last_id: 0,
            peer_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::DEFAULT_MAX_FRAME_SIZE,
            send_window: i64::from(frame::DEFAULT_WINDOW),
            recv_window: i64::from(limits.connection_window),
            recv_unacked: 0,
            resets: limits.reset_burst,
            flood: limits.flood_burst,
            control_backlog: 0,
            control_end: 0,
            written: 0,
            capacity_scan: false,
            goaway_sent: None,
            closed: [(0, false); CLOSED_KEPT],
            closed_next: 0,
            meta: Meta::default(),
            limits,
        }
    }

    /// Processes input up to the next event.
    ///
    /// # Errors
    ///
    /// A [`ConnError`]: a GOAWAY is in the output; write it out and close. Every later call
    /// returns the same error.
    pub fn recv<'a>(&'a mut self, input: &'a [u8]) -> Result<Recv<'a>, ConnError> {
        if let State::Closed(e) = self.state {
            return Err(e);
        }
        let (consumed, pending) = match self.process(input) {
            Ok(r) => r,
            Err(e) => {
                self.fail(e);
                return Err(e);
            }
        };
        let event = pending.map(|p| self.event(p, input));
        Ok(Recv { consumed, event })
    }

    /// Bytes to write to the socket.
    pub fn output(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// `n` bytes of [`output`](Self::output) were written.
    pub fn advance(&mut self, n: usize) {
        let n = n.min(self.out.len() - self.out_pos);
        self.out_pos += n;
        self.written += n as u64;
        if self.written >= self.control_end {
            self.control_backlog = 0;
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos >= 64 * 1024 {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        if self.streams.iter().any(|s| s.blocked) {
            self.capacity_scan = true;
        }
    }

    /// Gives back the buffers an idle connection does not need (output, field list, block
    /// and stream table; the HPACK tables stay, they are the connection's state). The next
    /// request takes them again. Does nothing unless [`is_idle`](Self::is_idle), with no
    /// output waiting and no field block begun.
    pub fn release_memory(&mut self) {
        if !self.streams.is_empty() || self.out_pos < self.out.len() || self.cont.is_some() {
            return;
        }
        self.out = Vec::new();
        self.out_pos = 0;
        self.block = Vec::new();
        self.streams = Vec::new();
        self.list.release();
    }

    /// A field block was begun (HEADERS without END_HEADERS) and its CONTINUATION frames
    /// have not all come: the client is mid-message, as with part of a frame in the input.
    pub fn mid_block(&self) -> bool {
        self.cont.is_some()
    }

    /// No stream is open.
    pub fn is_idle(&self) -> bool {
        self.streams.is_empty()
    }

    /// How many streams are open (the limit is `SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Sends the response head (a 1xx first if wanted, then the final one). Names are sent
    /// in lowercase; connection-specific fields (§8.2.2) are left out. Values must hold no
    /// CR, LF or NUL (an HTTP/1.1 head parser refuses those already).
    ///
    /// # Errors
    ///
    /// [`SendError`]: nothing was written.
    pub fn send_response<'f>(
        &mut self,
        stream: StreamId,
        status: u16,
        fields: impl IntoIterator<Item = (&'f [u8], &'f [u8])>,
        end_stream: bool,
    ) -> Result<(), SendError> {
        let i = self.sendable(stream)?;
        if self.streams[i].send != Reply::Head {
            return Err(SendError::State("response head already sent"));
        }
        let informational = status < 200;
        if !(100..1000).contains(&status) || status == 101 || (informational && end_stream) {
            return Err(SendError::Status);
        }
        self.write_block(stream.0, end_stream, |enc, out| {
            enc.status(status, out);
            for (n, v) in fields {
                if !connection_specific(n) {
                    enc.field(n, v, out);
                }
            }
        });
        if !informational {
            self.streams[i].send = Reply::Body;
        }
        if end_stream {
            self.finish_send(i);
        }
        Ok(())
    }

    /// Sends response body bytes, as many as the windows and the output allow: returns how
    /// many were taken. When fewer than all, an [`Event::Capacity`] follows once more fit.
    /// END_STREAM goes with the last byte only if all were taken (or `data` is empty).
    ///
    /// # Errors
    ///
    /// [`SendError`]: nothing was written.
    pub fn send_data(
        &mut self,
        stream: StreamId,
        data: &[u8],
        end_stream: bool,
    ) -> Result<usize, SendError> {
        let i = self.sendable(stream)?;
        if self.streams[i].send != Reply::Body {
            return Err(SendError::State("no response head sent"));
        }
        let room = self.room();
        let s = &mut self.streams[i];
        let window = s.send_window.min(self.send_window).max(0) as usize;
        let n = data.len().min(window).min(room);
        let end = end_stream && n == data.len();
        if n == 0 && !end {
            s.blocked = true;
            return Ok(0);
        }
        s.send_window -= n as i64;
        self.send_window -= n as i64;
        s.blocked = n < data.len();
        let mut chunks = data[..n].chunks(self.peer_max_frame as usize).peekable();
        if n == 0 {
            frame::write_header(&mut self.out, 0, kind::DATA, flag::END_STREAM, stream.0);
        }
        while let Some(c) = chunks.next() {
            let last = chunks.peek().is_none();
            let flags = if end && last { flag::END_STREAM } else { 0 };
            frame::write_header(&mut self.out, c.len(), kind::DATA, flags, stream.0);
            self.out.extend_from_slice(c);
        }
        if end {
            self.finish_send(i);
        }
        Ok(n)
    }

    /// Sends trailers, ending the response.
    ///
    /// # Errors
    ///
    /// [`SendError`]: nothing was written.
    pub fn send_trailers<'f>(
        &mut self,
        stream: StreamId,
        fields: impl IntoIterator<Item = (&'f [u8], &'f [u8])>,
    ) -> Result<(), SendError> {
        let i = self.sendable(stream)?;
        if self.streams[i].send != Reply::Body {
            return Err(SendError::State("no response head sent"));
        }
        self.write_block(stream.0, true, |enc, out| {
            for (n, v) in fields {
                if !connection_specific(n) {
                    enc.field(n, v, out);
                }
            }
        });
        self.finish_send(i);
        Ok(())
    }

    /// What [`send_data`](Self::send_data) would take now on `stream`.
    pub fn send_capacity(&self, stream: StreamId) -> usize {
        match self.find(stream.0) {
            Some(i) if self.streams[i].send == Reply::Body => self.capacity(i),
            _ => 0,
        }
    }

    /// Resets a stream (RST_STREAM with `code`), e.g. when its upstream failed after the
    /// head was sent, or NO_ERROR to stop a request body after a complete response
    /// (§8.1). Unknown streams are ignored.
    pub fn reset(&mut self, stream: StreamId, code: ErrorCode) {
        if matches!(self.state, State::Closed(_)) {
            return;
        }
        if let Some(i) = self.find(stream.0) {
            frame::write_rst_stream(&mut self.out, stream.0, code);
            self.remove(i, true);
        }
    }

    /// The executor consumed `n` bytes of `stream`'s request body: window for them goes
    /// back to the client (WINDOW_UPDATEs when half a window is due), so a slow upstream
    /// holds back only its own stream. Bytes of streams already gone were given back.
    pub fn release(&mut self, stream: StreamId, n: usize) {
        let Some(i) = self.find(stream.0) else {
            return;
        };
        let s = &mut self.streams[i];
        let n = s.held.min(u32::try_from(n).unwrap_or(u32::MAX));
        s.held -= n;
        self.credit(i, n);
    }

    /// Tells the client to open no more streams, still taking those it already sent: a
    /// GOAWAY naming the highest stream id possible (RFC 9113 §6.8's graceful shutdown). A
    /// [`Connection::go_away`] must follow.
    pub fn go_away_notice(&mut self) {
        if matches!(self.state, State::Closed(_)) {
            return;
        }
        // The highest stream id there is (31 bits).
        frame::write_goaway(&mut self.out, 0x7fff_ffff, ErrorCode::NoError);
    }

    /// Sends GOAWAY naming the highest stream seen: streams the client opens after it are
    /// ignored. With NO_ERROR, a graceful shutdown: serve the open streams, close when
    /// [`is_idle`](Self::is_idle).
    pub fn go_away(&mut self, code: ErrorCode) {
        if matches!(self.state, State::Closed(_)) {
            return;
        }
        frame::write_goaway(&mut self.out, self.last_id, code);
        self.goaway_sent = Some(self.last_id);
    }

    // ---- receiving ----

    /// Runs frames until one yields an event or the input ends.
    fn process(&mut self, input: &[u8]) -> Result<(usize, Option<Pending>), ConnError> {
        let mut pos = 0;
        if self.state == State::Preface {
            let want = frame::PREFACE.len().min(input.len());
            if input[..want] != frame::PREFACE[..want] {
                return Err(ConnError::Protocol("not the HTTP/2 client preface"));
            }
            if want < frame::PREFACE.len() {
                return Ok((0, None));
            }
            pos = want;
            self.state = State::FirstSettings;
        }
        loop {
            if self.capacity_scan
                && let Some(p) = self.next_capacity()
            {
                return Ok((pos, Some(p)));
            }
            if self.out.len() - self.out_pos >= self.limits.max_output as usize {
                return Ok((pos, None));
            }
            let Some(head) = input.get(pos..pos + frame::HEADER_LEN) else {
                return Ok((pos, None));
            };
            let mut b = [0u8; frame::HEADER_LEN];
            b.copy_from_slice(head);
            let h = Header::parse(&b);
            if h.len > MAX_FRAME {
                return Err(ConnError::FrameSize(
                    "frame larger than SETTINGS_MAX_FRAME_SIZE",
                ));
            }
            let start = pos + frame::HEADER_LEN;
            let end = start + h.len as usize;
            let Some(payload) = input.get(start..end) else {
                return Ok((pos, None));
            };
            pos = end;
            if self.state == State::FirstSettings {
                if h.kind != kind::SETTINGS || h.has(flag::ACK) {
                    return Err(ConnError::Protocol("first frame not SETTINGS"));
                }
                self.state = State::Open;
            }
            if let Some(p) = self.frame(h, payload, start)? {
                return Ok((pos, Some(p)));
            }
        }
    }

    fn frame(
        &mut self,
        h: Header,
        payload: &[u8],
        at: usize,
    ) -> Result<Option<Pending>, ConnError> {
        if let Some(c) = self.cont
            && (h.kind != kind::CONTINUATION || h.stream != c.stream)
        {
            return Err(ConnError::Protocol("expected CONTINUATION"));
        }
        match h.kind {
            kind::DATA => self.on_data(h, payload, at),
            kind::HEADERS => self.on_headers(h, payload),
            kind::CONTINUATION => self.on_continuation(h, payload),
            kind::PRIORITY => self.on_priority(h, payload),
            kind::RST_STREAM => self.on_rst_stream(h, payload),
            kind::SETTINGS => self.on_settings(h, payload).map(|()| None),
            kind::PUSH_PROMISE => Err(ConnError::Protocol("PUSH_PROMISE from a client")),
            kind::PING => self.on_ping(h, payload).map(|()| None),
            kind::GOAWAY => self.on_goaway(h, payload),
            kind::WINDOW_UPDATE => self.on_window_update(h, payload),
            // §5.5: unknown frame types are ignored.
            _ => self.spend_flood().map(|()| None),
        }
    }

    fn on_data(
        &mut self,
        h: Header,
        payload: &[u8],
        at: usize,
    ) -> Result<Option<Pending>, ConnError> {
        if h.stream == 0 {
            return Err(ConnError::Protocol("DATA on stream 0"));
        }
        let len = h.len;
        // §6.9: every DATA frame counts against the connection window, whatever the stream.
        if i64::from(len) > self.recv_window {
            return Err(ConnError::FlowControl("connection window overrun"));
        }
        self.recv_window -= i64::from(len);
        let data = frame::unpad(&h, payload)?;
        let end_stream = h.has(flag::END_STREAM);
        let Some(i) = self.find(h.stream) else {
            self.credit_connection(len);
            return match self.gone(h.stream) {
                Gone::Idle => Err(ConnError::Protocol("DATA on an idle stream")),
                // §5.1: late frames after our RST_STREAM are ignored.
                Gone::Reset => self.spend_flood().map(|()| None),
                // §6.1: DATA on a stream that is not open.
                Gone::Closed => {
                    frame::write_rst_stream(&mut self.out, h.stream, ErrorCode::StreamClosed);
                    self.remember(h.stream, true);
                    self.spend_reset().map(|()| None)
                }
            };
        };
        let s = &self.streams[i];
        let received = s.received + data.len() as u64;
        let error = if !s.recv_open {
            Some(ErrorCode::StreamClosed)
        } else if i64::from(len) > s.recv_window {
            Some(ErrorCode::FlowControl)
        } else {
            // §8.1.1: a body that disagrees with content-length is malformed.
            s.content_length
                .filter(|&cl| received > cl || (end_stream && received != cl))
                .map(|_| ErrorCode::Protocol)
        };
        if let Some(code) = error {
            self.credit_connection(len);
            return self.reset_stream(i, code);
        }
        let s = &mut self.streams[i];
        s.recv_window -= i64::from(len);
        s.received = received;
        if end_stream {
            s.recv_open = false;
        }
        if s.discard {
            self.credit(i, len);
            self.maybe_close(i);
            return Ok(None);
        }
        let padding = len - data.len() as u32;
        s.held += data.len() as u32;
        if padding > 0 {
            self.credit(i, padding);
        }
        if data.is_empty() && !end_stream {
            self.spend_flood()?;
            return Ok(None);
        }
        let stream = h.stream;
        self.maybe_close(i);
        let start = at + (payload.len() - data.len() - padding as usize);
        Ok(Some(Pending::Data {
            stream,
            start,
            end: start + data.len(),
            end_stream,
        }))
    }

    fn on_headers(&mut self, h: Header, payload: &[u8]) -> Result<Option<Pending>, ConnError> {
        if h.stream == 0 || h.stream.is_multiple_of(2) {
            return Err(ConnError::Protocol("HEADERS on stream 0 or an even stream"));
        }
        let (fragment, priority) = frame::headers_fragment(&h, payload)?;
        let self_dependent = priority.is_some_and(|p| p.dependency == h.stream);
        let end_stream = h.has(flag::END_STREAM);
        if h.has(flag::END_HEADERS) {
            self.decoder.decode(fragment, &mut self.list)?;
            return self.on_block(h.stream, end_stream, self_dependent);
        }
        if fragment.len() > self.limits.max_header_block as usize {
            return Err(ConnError::Calm("field block too large"));
        }
        self.block.clear();
        self.block.extend_from_slice(fragment);
        self.cont = Some(Continuation {
            stream: h.stream,
            end_stream,
            self_dependent,
            frames: 0,
        });
        Ok(None)
    }

    fn on_continuation(&mut self, h: Header, payload: &[u8]) -> Result<Option<Pending>, ConnError> {
        let Some(mut c) = self.cont else {
            return Err(ConnError::Protocol("CONTINUATION without HEADERS"));
        };
        c.frames = c.frames.saturating_add(1);
        // SECURITY: CONTINUATION floods (2024): bound the frames and the bytes of a block.
        if c.frames > self.limits.max_continuations {
            return Err(ConnError::Calm("too many CONTINUATION frames"));
        }
        if self.block.len() + payload.len() > self.limits.max_header_block as usize {
            return Err(ConnError::Calm("field block too large"));
        }
        self.block.extend_from_slice(payload);
        if !h.has(flag::END_HEADERS) {
            self.cont = Some(c);
            if payload.is_empty() {
                self.spend_flood()?;
            }
            return Ok(None);
        }
        self.cont = None;
        let block = std::mem::take(&mut self.block);
        let r = self.decoder.decode(&block, &mut self.list);
        self.block = block;
        r?;
        self.on_block(c.stream, c.end_stream, c.self_dependent)
    }

    /// A whole field block, decoded into `self.list`: a request, or trailers.
    fn on_block(
        &mut self,
        id: u32,
        end_stream: bool,
        self_dependent: bool,
    ) -> Result<Option<Pending>, ConnError> {
        if let Some(i) = self.find(id) {
            let s = &self.streams[i];
            if !s.recv_open {
                return self.reset_stream(i, ErrorCode::StreamClosed);
            }
            // §8.1: a second HEADERS must end the stream (trailers).
            if !end_stream || self_dependent || request::trailers(&self.list).is_err() {
                return self.reset_stream(i, ErrorCode::Protocol);
            }
            if self.list.too_large() {
                return self.reset_stream(i, ErrorCode::EnhanceYourCalm);
            }
            if s.content_length.is_some_and(|cl| cl != s.received) {
                return self.reset_stream(i, ErrorCode::Protocol);
            }
            let s = &mut self.streams[i];
            s.recv_open = false;
            if s.discard {
                self.maybe_close(i);
                return Ok(None);
            }
            self.maybe_close(i);
            return Ok(Some(Pending::Trailers { stream: id }));
        }
        match self.gone(id) {
            Gone::Idle => {}
            // Decoded to keep HPACK in step, then dropped.
            Gone::Reset => return self.spend_flood().map(|()| None),
            Gone::Closed if self.was_closed(id) => {
                return Err(ConnError::StreamClosed("HEADERS on a closed stream"));
            }
            // §5.1.1: a new stream must have a higher id than every earlier one.
            Gone::Closed => return Err(ConnError::Protocol("stream id not increasing")),
        }
        self.last_id = id;
        if self_dependent {
            return self.refuse(id, ErrorCode::Protocol);
        }
        if self.streams.len() >= self.limits.max_concurrent_streams as usize {
            return self.refuse(id, ErrorCode::RefusedStream);
        }
        self.flood = self
            .flood
            .saturating_add(self.limits.flood_refill)
            .min(self.limits.flood_burst);
        if self.list.too_large() {
            self.open(id, end_stream, None, true);
            return Ok(Some(Pending::TooLarge { stream: id }));
        }
        let meta = match request::request(&self.list, self.limits.extended_connect) {
            Ok(m) if !(end_stream && m.content_length.is_some_and(|cl| cl > 0)) => m,
            _ => return self.refuse(id, ErrorCode::Protocol),
        };
        self.open(id, end_stream, meta.content_length, false);
        self.meta = meta;
        Ok(Some(if meta.connect {
            Pending::Connect {
                stream: id,
                end_stream,
            }
        } else {
            Pending::Request {
                stream: id,
                end_stream,
            }
        }))
    }

    fn on_priority(&mut self, h: Header, payload: &[u8]) -> Result<Option<Pending>, ConnError> {
        if h.stream == 0 {
            return Err(ConnError::Protocol("PRIORITY on stream 0"));
        }
        let Some(p) = payload.first_chunk::<5>().filter(|_| payload.len() == 5) else {
            return Err(ConnError::FrameSize("PRIORITY not 5 bytes"));
        };
        self.spend_flood()?;
        if frame::Priority::parse(p).dependency == h.stream {
            return match self.find(h.stream) {
                Some(i) => self.reset_stream(i, ErrorCode::Protocol),
                None => Err(ConnError::Protocol("stream depends on itself")),
            };
        }
        Ok(None)
    }

    fn on_rst_stream(&mut self, h: Header, payload: &[u8]) -> Result<Option<Pending>, ConnError> {
        if h.stream == 0 {
            return Err(ConnError::Protocol("RST_STREAM on stream 0"));
        }
        if payload.len() != 4 {
            return Err(ConnError::FrameSize("RST_STREAM not 4 bytes"));
        }
        let code = ErrorCode::from_u32(frame::be_u32(payload));
        let Some(i) = self.find(h.stream) else {
            if h.stream > self.last_id {
                return Err(ConnError::Protocol("RST_STREAM on an idle stream"));
            }
            self.spend_flood()?;
            return Ok(None);
        };
        let s = &self.streams[i];
        let (announced, answered) = (s.announced, s.send == Reply::Done);
        self.remove(i, false);
        if !answered {
            // SECURITY: rapid reset (CVE-2023-44487): a stream the client cancels before
            // its response ended cost work for nothing.
            self.spend_reset()?;
        }
        Ok(announced.then_some(Pending::Reset {
            stream: h.stream,
            code,
        }))
    }

    fn on_settings(&mut self, h: Header, payload: &[u8]) -> Result<(), ConnError> {
        if h.stream != 0 {
            return Err(ConnError::Protocol("SETTINGS on a stream"));
        }
        if h.has(flag::ACK) {
            if !payload.is_empty() {
                return Err(ConnError::FrameSize("SETTINGS ACK with a payload"));
            }
            return Ok(());
        }
        if !payload.len().is_multiple_of(6) {
            return Err(ConnError::FrameSize("SETTINGS not a multiple of 6 bytes"));
        }
        self.spend_flood()?;
        for s in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let v = frame::be_u32(&s[2..]);
            match id {
                setting::HEADER_TABLE_SIZE => self.encoder.table_size_changed(),
                setting::ENABLE_PUSH | setting::ENABLE_CONNECT_PROTOCOL if v > 1 => {
                    return Err(ConnError::Protocol("boolean setting not 0 or 1"));
                }
                setting::INITIAL_WINDOW_SIZE => {
                    if v > frame::MAX_WINDOW {
                        return Err(ConnError::FlowControl("initial window too large"));
                    }
                    // §6.9.2: the change applies to every open stream, maybe below zero.
                    let delta = i64::from(v) - i64::from(self.peer_window);
                    self.peer_window = v;
                    for s in &mut self.streams {
                        s.send_window += delta;
                        if s.send_window > i64::from(frame::MAX_WINDOW) {
                            return Err(ConnError::FlowControl("stream window overflow"));
                        }
                    }
                    if delta > 0 {
                        self.capacity_scan = true;
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME_SIZE..=frame::MAX_MAX_FRAME_SIZE).contains(&v) {
                        return Err(ConnError::Protocol("max frame size out of range"));
                    }
                    self.peer_max_frame = v;
                }
                // MAX_CONCURRENT_STREAMS bounds pushes, which we never send;
                // MAX_HEADER_LIST_SIZE is advisory; unknown settings are ignored (§6.5.2).
                _ => {}
            }
        }
        self.control(frame::HEADER_LEN)?;
        frame::write_settings_ack(&mut self.out);
        Ok(())
    }

    fn on_ping(&mut self, h: Header, payload: &[u8]) -> Result<(), ConnError> {
        if h.stream != 0 {
            return Err(ConnError::Protocol("PING on a stream"));
        }
        let Some(data) = payload.first_chunk::<8>().filter(|_| payload.len() == 8) else {
            return Err(ConnError::FrameSize("PING not 8 bytes"));
        };
        self.spend_flood()?;
        if !h.has(flag::ACK) {
            self.control(frame::HEADER_LEN + 8)?;
            frame::write_ping_ack(&mut self.out, data);
        }
        Ok(())
    }

    fn on_goaway(&mut self, h: Header, payload: &[u8]) -> Result<Option<Pending>, ConnError> {
        if h.stream != 0 {
            return Err(ConnError::Protocol("GOAWAY on a stream"));
        }
        if payload.len() < 8 {
            return Err(ConnError::FrameSize("GOAWAY shorter than 8 bytes"));
        }
        self.spend_flood()?;
        let code = ErrorCode::from_u32(frame::be_u32(&payload[4..]));
        Ok(Some(Pending::GoAway { code }))
    }

    fn on_window_update(
        &mut self,
        h: Header,
        payload: &[u8],
    ) -> Result<Option<Pending>, ConnError> {
        if payload.len() != 4 {
            return Err(ConnError::FrameSize("WINDOW_UPDATE not 4 bytes"));
        }
        let inc = frame::be_u32(payload) & frame::MAX_WINDOW;
        if inc < TINY_WINDOW_UPDATE {
            self.spend_flood()?;
        }
        if h.stream == 0 {
            if inc == 0 {
                return Err(ConnError::Protocol("WINDOW_UPDATE of 0"));
            }
            self.send_window += i64::from(inc);
            if self.send_window > i64::from(frame::MAX_WINDOW) {
                return Err(ConnError::FlowControl("connection window overflow"));
            }
            if self.streams.iter().any(|s| s.blocked) {
                self.capacity_scan = true;
            }
            return Ok(None);
        }
        let Some(i) = self.find(h.stream) else {
            if h.stream > self.last_id {
                return Err(ConnError::Protocol("WINDOW_UPDATE on an idle stream"));
            }
            return Ok(None);
        };
        if inc == 0 {
            return self.reset_stream(i, ErrorCode::Protocol);
        }
        let s = &mut self.streams[i];
        s.send_window += i64::from(inc);
        if s.send_window > i64::from(frame::MAX_WINDOW) {
            return self.reset_stream(i, ErrorCode::FlowControl);
        }
        if s.blocked && self.capacity(i) > 0 {
            self.streams[i].blocked = false;
            return Ok(Some(Pending::Capacity { stream: h.stream }));
        }
        Ok(None)
    }

    // ---- streams ----

    fn find(&self, id: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.id == id)
    }

    /// What became of a stream not in the table.
    fn gone(&self, id: u32) -> Gone {
        if self.goaway_sent.is_some_and(|last| id > last) {
            Gone::Reset
        } else if id > self.last_id {
            Gone::Idle
        } else if self.closed.contains(&(id, true)) {
            Gone::Reset
        } else {
            Gone::Closed
        }
    }

    /// Whether a stream is remembered as closed without our reset.
    fn was_closed(&self, id: u32) -> bool {
        self.closed.contains(&(id, false))
    }

    fn remember(&mut self, id: u32, reset: bool) {
        self.closed[self.closed_next] = (id, reset);
        self.closed_next = (self.closed_next + 1) % CLOSED_KEPT;
    }

    /// The slot of a stream the executor may send on.
    fn sendable(&self, stream: StreamId) -> Result<usize, SendError> {
        if matches!(self.state, State::Closed(_)) {
            return Err(SendError::Closed);
        }
        let i = self.find(stream.0).ok_or(SendError::UnknownStream)?;
        if self.streams[i].send == Reply::Done {
            return Err(SendError::State("response already ended"));
        }
        if self.out.len() - self.out_pos >= self.limits.max_output as usize {
            return Err(SendError::Blocked);
        }
        Ok(i)
    }

    fn open(&mut self, id: u32, end_stream: bool, content_length: Option<u64>, discard: bool) {
        self.streams.push(Stream {
            id,
            recv_open: !end_stream,
            send: Reply::Head,
            announced: true,
            discard,
            recv_window: i64::from(self.limits.stream_window),
            unacked: 0,
            held: 0,
            send_window: i64::from(self.peer_window),
            blocked: false,
            content_length,
            received: 0,
        });
    }

    /// Refuses a new stream: RST_STREAM, and it counts against the reset budget.
    fn refuse(&mut self, id: u32, code: ErrorCode) -> Result<Option<Pending>, ConnError> {
        frame::write_rst_stream(&mut self.out, id, code);
        self.remember(id, true);
        self.spend_reset()?;
        Ok(None)
    }

    /// Resets a stream for a client error (§5.4.2): RST_STREAM, removal, an event if the
    /// executor knew it. Counts against the reset budget.
    fn reset_stream(&mut self, i: usize, code: ErrorCode) -> Result<Option<Pending>, ConnError> {
        let (id, announced) = (self.streams[i].id, self.streams[i].announced);
        frame::write_rst_stream(&mut self.out, id, code);
        self.remove(i, true);
        self.spend_reset()?;
        Ok(announced.then_some(Pending::Reset { stream: id, code }))
    }

    /// Our END_STREAM went out.
    fn finish_send(&mut self, i: usize) {
        self.streams[i].send = Reply::Done;
        self.streams[i].blocked = false;
        self.resets = self.resets.saturating_add(1).min(self.limits.reset_burst);
        if self.streams[i].discard && self.streams[i].recv_open {
            // §8.1: a complete response to a request we will not read; stop its body.
            frame::write_rst_stream(&mut self.out, self.streams[i].id, ErrorCode::NoError);
            self.remove(i, true);
            return;
        }
        self.maybe_close(i);
    }

    fn maybe_close(&mut self, i: usize) {
        let s = &self.streams[i];
        if !s.recv_open && s.send == Reply::Done {
            self.remove(i, false);
        }
    }

    /// Drops a stream (`reset`: we sent RST_STREAM), giving back the window its unreleased
    /// bytes hold.
    fn remove(&mut self, i: usize, reset: bool) {
        let s = self.streams.swap_remove(i);
        self.remember(s.id, reset);
        // Released bytes (`unacked`) were credited to the connection already.
        self.credit_connection(s.held);
    }

    /// Window for `n` consumed bytes of stream `i`: the stream's (while the client may send
    /// on it) and the connection's.
    fn credit(&mut self, i: usize, n: u32) {
        let half = self.limits.stream_window / 2;
        let s = &mut self.streams[i];
        if s.recv_open {
            s.unacked += n;
            if s.unacked >= half {
                frame::write_window_update(&mut self.out, s.id, s.unacked);
                s.recv_window += i64::from(s.unacked);
                s.unacked = 0;
            }
        } else {
            s.unacked = 0;
        }
        self.credit_connection(n);
    }

    fn credit_connection(&mut self, n: u32) {
        self.recv_unacked += n;
        if self.recv_unacked >= self.limits.connection_window / 2 {
            frame::write_window_update(&mut self.out, 0, self.recv_unacked);
            self.recv_window += i64::from(self.recv_unacked);
            self.recv_unacked = 0;
        }
    }

    /// What stream `i` could send now: its window, the connection's, the output's room.
    fn capacity(&self, i: usize) -> usize {
        let w = self.streams[i].send_window.min(self.send_window).max(0) as usize;
        w.min(self.room())
    }

    fn room(&self) -> usize {
        (self.limits.max_output as usize).saturating_sub(self.out.len() - self.out_pos)
    }

    fn next_capacity(&mut self) -> Option<Pending> {
        let i = (0..self.streams.len()).find(|&i| self.streams[i].blocked && self.capacity(i) > 0);
        match i {
            Some(i) => {
                self.streams[i].blocked = false;
                Some(Pending::Capacity {
                    stream: self.streams[i].id,
                })
            }
            None => {
                self.capacity_scan = false;
                None
            }
        }
    }

    // ---- budgets ----

    fn spend_reset(&mut self) -> Result<(), ConnError> {
        if self.resets == 0 {
            return Err(ConnError::Calm("too many streams reset"));
        }
        self.resets -= 1;
        Ok(())
    }

    fn spend_flood(&mut self) -> Result<(), ConnError> {
        if self.flood == 0 {
            return Err(ConnError::Calm("too many frames without requests"));
        }
        self.flood -= 1;
        Ok(())
    }

    /// A control frame of `len` bytes the peer's input makes us queue (SETTINGS or PING
    /// ACK), counted until the writer passes it.
    fn control(&mut self, len: usize) -> Result<(), ConnError> {
        self.control_backlog += 1;
        // SECURITY: SETTINGS and PING floods from a peer that does not read.
        if self.control_backlog > self.limits.max_control_backlog {
            return Err(ConnError::Calm("control frames queued unread"));
        }
        self.control_end = self.written + (self.out.len() - self.out_pos + len) as u64;
        Ok(())
    }

    // ---- writing ----

    /// Writes a field block as HEADERS (+ CONTINUATION when over the peer's frame size).
    fn write_block(
        &mut self,
        stream: u32,
        end_stream: bool,
        encode: impl FnOnce(&mut Encoder, &mut Vec<u8>),
    ) {
        let at = self.out.len();
        frame::write_header(&mut self.out, 0, kind::HEADERS, 0, stream);
        self.encoder.begin(&mut self.out);
        encode(&mut self.encoder, &mut self.out);
        let len = self.out.len() - at - frame::HEADER_LEN;
        let max = self.peer_max_frame as usize;
        let es = if end_stream { flag::END_STREAM } else { 0 };
        if len <= max {
            // Patch the header in place: real length and flags.
            let h = frame::header_bytes(len, kind::HEADERS, es | flag::END_HEADERS, stream);
            self.out[at..at + frame::HEADER_LEN].copy_from_slice(&h);
            return;
        }
        // Rare: split the block. Move it out, then frame it piece by piece.
        let block = self.out.split_off(at + frame::HEADER_LEN);
        self.out.truncate(at);
        let mut chunks = block.chunks(max).peekable();
        let mut first = true;
        while let Some(c) = chunks.next() {
            let last = chunks.peek().is_none();
            let (k, mut flags) = if first {
                (kind::HEADERS, es)
            } else {
                (kind::CONTINUATION, 0)
            };
            if last {
                flags |= flag::END_HEADERS;
            }
            frame::write_header(&mut self.out, c.len(), k, flags, stream);
            self.out.extend_from_slice(c);
            first = false;
        }
    }

    fn fail(&mut self, e: ConnError) {
        frame::write_goaway(&mut self.out, self.last_id, e.code());
        self.state = State::Closed(e);
    }

    fn event<'a>(&'a self, p: Pending, input: &'a [u8]) -> Event<'a> {
        match p {
            Pending::Request { stream, end_stream } => Event::Request {
                stream: StreamId(stream),
                head: self.meta.head(&self.list),
                end_stream,
            },
            Pending::Connect { stream, end_stream } => Event::Connect {
                stream: StreamId(stream),
                head: self.meta.head(&self.list),
                end_stream,
            },
            Pending::TooLarge { stream } => Event::HeadersTooLarge {
                stream: StreamId(stream),
            },
            Pending::Data {
                stream,
                start,
                end,
                end_stream,
            } => Event::Data {
                stream: StreamId(stream),
                data: &input[start..end],
                end_stream,
            },
            Pending::Trailers { stream } => Event::Trailers {
                stream: StreamId(stream),
                fields: Fields::trailers(&self.list),
            },
            Pending::Reset { stream, code } => Event::Reset {
                stream: StreamId(stream),
                code,
            },
            Pending::Capacity { stream } => Event::Capacity {
                stream: StreamId(stream),
            },
            Pending::GoAway { code } => Event::GoAway { code },
        }
    }
}

/// Fields HTTP/2 forbids (RFC 9113 §8.2.2), case-insensitively.
fn connection_specific(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 5] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event with owned contents, for comparing.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Request(u32, bool, String),
        Connect(u32),
        TooLarge(u32),
        Data(u32, usize, bool),
        Trailers(u32, Vec<(String, String)>),
        Reset(u32, ErrorCode),
        Capacity(u32),
        GoAway(ErrorCode),
    }

    fn s(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    fn summary(e: Event<'_>) -> Ev {
        match e {
            Event::Request {
                stream,
                head,
                end_stream,
            } => Ev::Request(
                stream.0,
                end_stream,
                format!("{} {}", s(head.method), s(head.path)),
            ),
            Event::Connect { stream, .. } => Ev::Connect(stream.0),
            Event::HeadersTooLarge { stream } => Ev::TooLarge(stream.0),
            Event::Data {
                stream,
                data,
                end_stream,
            } => Ev::Data(stream.0, data.len(), end_stream),
            Event::Trailers { stream, fields } => {
                Ev::Trailers(stream.0, fields.map(|(n, v)| (s(n), s(v))).collect())
            }
            Event::Reset { stream, code } => Ev::Reset(stream.0, code),
            Event::Capacity { stream } => Ev::Capacity(stream.0),
            Event::GoAway { code } => Ev::GoAway(code),
        }
    }

    /// Feeds bytes until no event; the bytes must end on a frame boundary.
    fn feed(c: &mut Connection, bytes: &[u8]) -> Result<Vec<Ev>, ConnError> {
        let mut pos = 0;
        let mut evs = Vec::new();
        loop {
            let r = c.recv(&bytes[pos..])?;
            pos += r.consumed;
            match r.event {
                Some(e) => evs.push(summary(e)),
                None => break,
            }
        }
        Ok(evs)
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        frame::write_header(&mut v, payload.len(), kind, flags, stream);
        v.extend_from_slice(payload);
        v
    }

    /// A field block of raw literals without indexing.
    fn block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut b = Vec::new();
        for (n, v) in fields {
            b.push(0);
            b.push(n.len() as u8);
            b.extend_from_slice(n.as_bytes());
            assert!(v.len() < 127);
            b.push(v.len() as u8);
            b.extend_from_slice(v.as_bytes());
        }
        b
    }

    const GET: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "app.lab.test"),
        (":path", "/"),
    ];
    const POST: [(&str, &str); 4] = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "app.lab.test"),
        (":path", "/up"),
    ];

    fn headers(stream: u32, fields: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
        let es = if end_stream { flag::END_STREAM } else { 0 };
        frame(
            kind::HEADERS,
            flag::END_HEADERS | es,
            stream,
            &block(fields),
        )
    }

    fn data(stream: u32, len: usize, end_stream: bool) -> Vec<u8> {
        let es = if end_stream { flag::END_STREAM } else { 0 };
        frame(kind::DATA, es, stream, &vec![b'd'; len])
    }

    /// A connection past the preface and the SETTINGS exchange, output drained.
    fn open(limits: Limits) -> Connection {
        let mut c = Connection::new(limits);
        let mut hello = frame::PREFACE.to_vec();
        hello.extend(frame(kind::SETTINGS, 0, 0, &[]));
        assert_eq!(feed(&mut c, &hello), Ok(vec![]));
        drain(&mut c);
        c
    }

    /// The frames in the output, which is then drained.
    fn drain(c: &mut Connection) -> Vec<(Header, Vec<u8>)> {
        let mut frames = Vec::new();
        let mut out = c.output();
        while out.len() >= frame::HEADER_LEN {
            let mut b = [0u8; frame::HEADER_LEN];
            b.copy_from_slice(&out[..frame::HEADER_LEN]);
            let h = Header::parse(&b);
            let end = frame::HEADER_LEN + h.len as usize;
            frames.push((h, out[frame::HEADER_LEN..end].to_vec()));
            out = &out[end..];
        }
        let n = c.output().len();
        c.advance(n);
        frames
    }

    /// The (stream, code) of each RST_STREAM in the output.
    fn resets(c: &mut Connection) -> Vec<(u32, ErrorCode)> {
        drain(c)
            .into_iter()
            .filter(|(h, _)| h.kind == kind::RST_STREAM)
            .map(|(h, p)| (h.stream, ErrorCode::from_u32(frame::be_u32(&p))))
            .collect()
    }

    fn goaway(c: &mut Connection) -> Option<ErrorCode> {
        drain(c)
            .into_iter()
            .find(|(h, _)| h.kind == kind::GOAWAY)
            .map(|(_, p)| ErrorCode::from_u32(frame::be_u32(&p[4..])))
    }

    #[test]
    fn s3_4_preface_settings_and_ack() {
        let mut c = Connection::new(Limits::default());
        let first = drain(&mut c);
        assert_eq!(first[0].0.kind, kind::SETTINGS);
        assert_eq!(first[1].0.kind, kind::WINDOW_UPDATE);
        // The preface in two pieces, then SETTINGS.
        assert_eq!(c.recv(&frame::PREFACE[..10]).map(|r| r.consumed), Ok(0));
        let mut rest = frame::PREFACE.to_vec();
        rest.extend(frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]));
        assert_eq!(feed(&mut c, &rest), Ok(vec![]));
        let out = drain(&mut c);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0.kind, out[0].0.flags), (kind::SETTINGS, flag::ACK));

        let cases: &[(&[u8], ConnError)] = &[
            (
                b"GET / HTTP/1.1\r\n\r\n",
                ConnError::Protocol("not the HTTP/2 client preface"),
            ),
            (
                &[&frame::PREFACE[..], &frame(kind::PING, 0, 0, &[0; 8])].concat(),
                ConnError::Protocol("first frame not SETTINGS"),
            ),
        ];
        for (input, want) in cases {
            let mut c = Connection::new(Limits::default());
            assert_eq!(feed(&mut c, input), Err(*want));
            assert_eq!(goaway(&mut c), Some(want.code()));
            assert_eq!(c.recv(b"").err(), Some(*want), "errors stick");
        }
    }

    /// Connection errors: the bytes after the SETTINGS exchange, the error.
    #[test]
    fn s5_4_1_connection_errors() {
        let big = vec![0u8; 16_385];
        let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
            (
                "s4_2 frame over max size",
                frame(0xfa, 0, 0, &big),
                ErrorCode::FrameSize,
            ),
            (
                "s5_1 DATA on idle stream",
                data(1, 1, false),
                ErrorCode::Protocol,
            ),
            (
                "s5_1 RST_STREAM on idle stream",
                frame(kind::RST_STREAM, 0, 3, &[0; 4]),
                ErrorCode::Protocol,
            ),
            (
                "s5_1 WINDOW_UPDATE on idle stream",
                frame(kind::WINDOW_UPDATE, 0, 3, &[0, 0, 0, 1]),
                ErrorCode::Protocol,
            ),
            (
                "s5_1_1 HEADERS on even stream",
                headers(2, &GET, true),
                ErrorCode::Protocol,
            ),
            (
                "s6_1 DATA on stream 0",
                data(0, 1, false),
                ErrorCode::Protocol,
            ),
            (
                "s6_1 padding too long",
                frame(kind::DATA, flag::PADDED, 1, &[5, 0]),
                ErrorCode::Protocol,
            ),
            (
                "s6_2 HEADERS on stream 0",
                headers(0, &GET, true),
                ErrorCode::Protocol,
            ),
            (
                "s6_3 PRIORITY not 5 bytes",
                frame(kind::PRIORITY, 0, 1, &[0; 4]),
                ErrorCode::FrameSize,
            ),
            (
                "s6_3 PRIORITY on stream 0",
                frame(kind::PRIORITY, 0, 0, &[0; 5]),
                ErrorCode::Protocol,
            ),
            (
                "s6_4 RST_STREAM not 4 bytes",
                frame(kind::RST_STREAM, 0, 1, &[0; 3]),
                ErrorCode::FrameSize,
            ),
            (
                "s6_5 SETTINGS on a stream",
                frame(kind::SETTINGS, 0, 1, &[]),
                ErrorCode::Protocol,
            ),
            (
                "s6_5 SETTINGS length",
                frame(kind::SETTINGS, 0, 0, &[0; 5]),
                ErrorCode::FrameSize,
            ),
            (
                "s6_5 SETTINGS ACK with payload",
                frame(kind::SETTINGS, flag::ACK, 0, &[0; 6]),
                ErrorCode::FrameSize,
            ),
            (
                "s6_5_2 ENABLE_PUSH 2",
                frame(kind::SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2]),
                ErrorCode::Protocol,
            ),
            (
                "s6_5_2 INITIAL_WINDOW_SIZE 2^31",
                frame(kind::SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]),
                ErrorCode::FlowControl,
            ),
            (
                "s6_5_2 MAX_FRAME_SIZE too small",
                frame(kind::SETTINGS, 0, 0, &[0, 5, 0, 0, 0x3f, 0xff]),
                ErrorCode::Protocol,
            ),
            (
                "s6_5_2 MAX_FRAME_SIZE too large",
                frame(kind::SETTINGS, 0, 0, &[0, 5, 1, 0, 0, 0]),
                ErrorCode::Protocol,
            ),
            (
                "s6_6 PUSH_PROMISE from client",
                frame(kind::PUSH_PROMISE, flag::END_HEADERS, 1, &[0, 0, 0, 2]),
                ErrorCode::Protocol,
            ),
            (
                "s6_7 PING not 8 bytes",
                frame(kind::PING, 0, 0, &[0; 7]),
                ErrorCode::FrameSize,
            ),
            (
                "s6_7 PING on a stream",
                frame(kind::PING, 0, 1, &[0; 8]),
                ErrorCode::Protocol,
            ),
            (
                "s6_8 GOAWAY on a stream",
                frame(kind::GOAWAY, 0, 1, &[0; 8]),
                ErrorCode::Protocol,
            ),
            (
                "s6_8 GOAWAY too short",
                frame(kind::GOAWAY, 0, 0, &[0; 7]),
                ErrorCode::FrameSize,
            ),
            (
                "s6_9 WINDOW_UPDATE of 0 on the connection",
                frame(kind::WINDOW_UPDATE, 0, 0, &[0; 4]),
                ErrorCode::Protocol,
            ),
            (
                "s6_9 WINDOW_UPDATE not 4 bytes",
                frame(kind::WINDOW_UPDATE, 0, 0, &[0; 5]),
                ErrorCode::FrameSize,
            ),
            (
                "s6_9_1 connection window overflow",
                frame(kind::WINDOW_UPDATE, 0, 0, &[0x7f, 0xff, 0xff, 0xff]),
                ErrorCode::FlowControl,
            ),
            (
                "s6_10 CONTINUATION without HEADERS",
                frame(kind::CONTINUATION, flag::END_HEADERS, 1, &[]),
                ErrorCode::Protocol,
            ),
            (
                "s6_10 frame between HEADERS and CONTINUATION",
                [
                    frame(kind::HEADERS, 0, 1, &block(&GET)),
                    frame(kind::PING, 0, 0, &[0; 8]),
                ]
                .concat(),
                ErrorCode::Protocol,
            ),
            (
                "s6_10 CONTINUATION on another stream",
                [
                    frame(kind::HEADERS, 0, 1, &block(&GET)),
                    frame(kind::CONTINUATION, flag::END_HEADERS, 3, &[]),
                ]
                .concat(),
                ErrorCode::Protocol,
            ),
            (
                "rfc7541 s4_2 table size update above limit",
                frame(kind::HEADERS, flag::END_HEADERS, 1, &[0x3f, 0xe2, 0x1f]),
                ErrorCode::Compression,
            ),
            (
                "rfc7541 s6_1 index 0",
                frame(kind::HEADERS, flag::END_HEADERS, 1, &[0x80]),
                ErrorCode::Compression,
            ),
        ];
        for (name, bytes, want) in cases {
            let mut c = open(Limits::default());
            let got = feed(&mut c, &bytes).map_err(|e| e.code());
            assert_eq!(got, Err(want), "{name}");
            assert_eq!(goaway(&mut c), Some(want), "{name}: GOAWAY sent");
        }
    }

    /// Stream errors: the bytes, the RST_STREAMs sent, the events.
    #[test]
    fn s5_4_2_stream_errors() {
        let self_dep = frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM | flag::PRIORITY,
            1,
            &[&[0, 0, 0, 1, 16][..], &block(&GET)].concat(),
        );
        type Case = (&'static str, Vec<u8>, Vec<(u32, ErrorCode)>, Vec<Ev>);
        let cases: Vec<Case> = vec![
            (
                "s5_1 DATA after END_STREAM",
                [headers(1, &GET, true), data(1, 1, false)].concat(),
                vec![(1, ErrorCode::StreamClosed)],
                vec![
                    Ev::Request(1, true, "GET /".into()),
                    Ev::Reset(1, ErrorCode::StreamClosed),
                ],
            ),
            (
                "s5_3_1 HEADERS depending on itself",
                self_dep,
                vec![(1, ErrorCode::Protocol)],
                vec![],
            ),
            (
                "s8_1 second HEADERS without END_STREAM",
                [headers(1, &POST, false), headers(1, &[("x", "y")], false)].concat(),
                vec![(1, ErrorCode::Protocol)],
                vec![
                    Ev::Request(1, false, "POST /up".into()),
                    Ev::Reset(1, ErrorCode::Protocol),
                ],
            ),
            (
                "s8_1_1 malformed request is reset, never reported",
                headers(1, &[("connection", "close")], true),
                vec![(1, ErrorCode::Protocol)],
                vec![],
            ),
            (
                "s8_1_1 DATA beyond content-length",
                [
                    headers(1, &[&POST[..], &[("content-length", "3")]].concat(), false),
                    data(1, 4, false),
                ]
                .concat(),
                vec![(1, ErrorCode::Protocol)],
                vec![
                    Ev::Request(1, false, "POST /up".into()),
                    Ev::Reset(1, ErrorCode::Protocol),
                ],
            ),
            (
                "s8_1_1 END_STREAM short of content-length",
                [
                    headers(1, &[&POST[..], &[("content-length", "3")]].concat(), false),
                    data(1, 2, true),
                ]
                .concat(),
                vec![(1, ErrorCode::Protocol)],
                vec![
                    Ev::Request(1, false, "POST /up".into()),
                    Ev::Reset(1, ErrorCode::Protocol),
                ],
            ),
            (
                "s8_1_1 content-length with END_STREAM on HEADERS",
                headers(1, &[&POST[..], &[("content-length", "3")]].concat(), true),
                vec![(1, ErrorCode::Protocol)],
                vec![],
            ),
            (
                "s6_9 stream WINDOW_UPDATE of 0",
                [
                    headers(1, &GET, true),
                    frame(kind::WINDOW_UPDATE, 0, 1, &[0; 4]),
                ]
                .concat(),
                vec![(1, ErrorCode::Protocol)],
                vec![
                    Ev::Request(1, true, "GET /".into()),
                    Ev::Reset(1, ErrorCode::Protocol),
                ],
            ),
            (
                "s6_9_1 stream window overflow",
                [
                    headers(1, &GET, true),
                    frame(kind::WINDOW_UPDATE, 0, 1, &[0x7f, 0xff, 0xff, 0xff]),
                ]
                .concat(),
                vec![(1, ErrorCode::FlowControl)],
                vec![
                    Ev::Request(1, true, "GET /".into()),
                    Ev::Reset(1, ErrorCode::FlowControl),
                ],
            ),
            (
                "s6_4 client reset is reported",
                [
                    headers(1, &GET, true),
                    frame(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8]),
                ]
                .concat(),
                vec![],
                vec![
                    Ev::Request(1, true, "GET /".into()),
                    Ev::Reset(1, ErrorCode::Cancel),
                ],
            ),
            (
                "s8_5 CONNECT is reported as such",
                headers(1, &[(":method", "CONNECT"), (":authority", "h:22")], false),
                vec![],
                vec![Ev::Connect(1)],
            ),
            (
                "s8_1 trailers end the request",
                [
                    headers(1, &POST, false),
                    data(1, 5, false),
                    headers(1, &[("x-sum", "1")], true),
                ]
                .concat(),
                vec![],
                vec![
                    Ev::Request(1, false, "POST /up".into()),
                    Ev::Data(1, 5, false),
                    Ev::Trailers(1, vec![("x-sum".into(), "1".into())]),
                ],
            ),
            (
                "s5_1 frames on closed streams are ignored",
                [
                    headers(1, &[("connection", "close")], false),
                    data(1, 3, false),
                    frame(kind::RST_STREAM, 0, 1, &[0; 4]),
                    frame(kind::WINDOW_UPDATE, 0, 1, &[0, 0, 4, 0]),
                    frame(kind::PRIORITY, 0, 9, &[0, 0, 0, 1, 0]),
                    headers(1, &[("x", "y")], true),
                ]
                .concat(),
                vec![(1, ErrorCode::Protocol)],
                vec![],
            ),
        ];
        for (name, bytes, want_rst, want_ev) in cases {
            let mut c = open(Limits::default());
            assert_eq!(feed(&mut c, &bytes), Ok(want_ev), "{name}");
            assert_eq!(resets(&mut c), want_rst, "{name}");
        }
    }

    #[test]
    fn s5_1_closed_streams() {
        // §6.1: DATA on a stream that ended is STREAM_CLOSED.
        let mut c = open(Limits::default());
        feed(&mut c, &headers(1, &GET, true)).expect("request");
        respond(&mut c, 1, 0);
        drain(&mut c);
        assert_eq!(feed(&mut c, &data(1, 3, false)), Ok(vec![]));
        assert_eq!(resets(&mut c), [(1, ErrorCode::StreamClosed)]);
        // §5.1: HEADERS on it is a connection error.
        let mut c = open(Limits::default());
        feed(&mut c, &headers(1, &GET, true)).expect("request");
        respond(&mut c, 1, 0);
        assert_eq!(
            feed(&mut c, &headers(1, &GET, true)).map_err(|e| e.code()),
            Err(ErrorCode::StreamClosed)
        );
        // §5.1.1: a lower id than one already used.
        let mut c = open(Limits::default());
        feed(&mut c, &headers(5, &GET, true)).expect("request");
        assert_eq!(
            feed(&mut c, &headers(3, &GET, true)),
            Err(ConnError::Protocol("stream id not increasing"))
        );
        // §5.1: the body of a refused request arrives after our RST_STREAM: ignored.
        let mut c = open(Limits {
            max_concurrent_streams: 1,
            ..Limits::default()
        });
        let bytes = [
            headers(1, &POST, false),
            headers(3, &POST, false),
            data(3, 10, true),
        ]
        .concat();
        assert_eq!(
            feed(&mut c, &bytes),
            Ok(vec![Ev::Request(1, false, "POST /up".into())])
        );
        assert_eq!(resets(&mut c), [(3, ErrorCode::RefusedStream)]);
        // So is a stream's after the executor reset it.
        c.reset(StreamId(1), ErrorCode::Cancel);
        assert_eq!(feed(&mut c, &data(1, 10, true)), Ok(vec![]));
        assert_eq!(resets(&mut c), [(1, ErrorCode::Cancel)]);
    }

    #[test]
    fn s5_3_1_priority_on_itself() {
        let mut c = open(Limits::default());
        let prio = frame(kind::PRIORITY, 0, 1, &[0, 0, 0, 1, 16]);
        assert_eq!(
            feed(&mut c, &prio),
            Err(ConnError::Protocol("stream depends on itself"))
        );
        let mut c = open(Limits::default());
        let bytes = [headers(1, &POST, false), prio].concat();
        assert_eq!(
            feed(&mut c, &bytes),
            Ok(vec![
                Ev::Request(1, false, "POST /up".into()),
                Ev::Reset(1, ErrorCode::Protocol)
            ])
        );
        // Any other dependency, on any stream, is ignored.
        let other = frame(kind::PRIORITY, 0, 7, &[0x80, 0, 0, 3, 16]);
        assert_eq!(feed(&mut c, &other), Ok(vec![]));
    }

    #[test]
    fn rfc7541_s4_2_size_update_follows_peer_table_size() {
        let mut c = open(Limits::default());
        feed(&mut c, &frame(kind::SETTINGS, 0, 0, &[0, 1, 0, 0, 0, 0])).expect("settings");
        for id in [1, 3] {
            feed(&mut c, &headers(id, &GET, true)).expect("request");
            respond(&mut c, id, 0);
        }
        let blocks: Vec<Vec<u8>> = drain(&mut c)
            .into_iter()
            .filter(|(h, _)| h.kind == kind::HEADERS)
            .map(|(_, p)| p)
            .collect();
        // Once, at the start of the first block after the change: "table size 0", then 200.
        assert_eq!(blocks, [vec![0x20, 0x88], vec![0x88]]);
    }

    fn respond(c: &mut Connection, stream: u32, body: usize) {
        c.send_response(StreamId(stream), 200, [], body == 0)
            .expect("head");
        if body > 0 {
            assert_eq!(
                c.send_data(StreamId(stream), &vec![b'b'; body], true),
                Ok(body)
            );
        }
    }

    #[test]
    fn s5_1_2_max_concurrent_streams_refused() {
        let mut c = open(Limits::default());
        let mut reqs = Vec::new();
        for i in 0..101 {
            reqs.extend(headers(1 + 2 * i, &GET, true));
        }
        let evs = feed(&mut c, &reqs).expect("no connection error");
        assert_eq!(evs.len(), 100);
        assert_eq!(resets(&mut c), vec![(201, ErrorCode::RefusedStream)]);
        // Completing one frees a slot.
        respond(&mut c, 1, 0);
        assert_eq!(c.open_streams(), 99);
        assert_eq!(
            feed(&mut c, &headers(203, &GET, true)).map(|e| e.len()),
            Ok(1)
        );
    }

    #[test]
    fn response_head_encoding_and_continuation_split() {
        let mut c = open(Limits::default());
        feed(&mut c, &headers(1, &GET, true)).expect("request");
        let long = "v".repeat(20_000);
        let fields: [(&[u8], &[u8]); 4] = [
            (b"Content-Type", b"text/html"),
            (b"Connection", b"keep-alive"),
            (b"Transfer-Encoding", b"chunked"),
            (b"x-long", long.as_bytes()),
        ];
        c.send_response(StreamId(1), 404, fields, true)
            .expect("sent");
        let out = drain(&mut c);
        let kinds: Vec<(u8, u8)> = out.iter().map(|(h, _)| (h.kind, h.flags)).collect();
        assert_eq!(
            kinds,
            [
                (kind::HEADERS, flag::END_STREAM),
                (kind::CONTINUATION, flag::END_HEADERS)
            ]
        );
        let block: Vec<u8> = out.iter().flat_map(|(_, p)| p.clone()).collect();
        let mut d = Decoder::new(4096);
        let mut list = HeaderList::new(64 * 1024, 96, 4096);
        d.decode(&block, &mut list).expect("decodes");
        let got: Vec<(String, usize)> = list.iter().map(|(n, v)| (s(n), v.len())).collect();
        assert_eq!(
            got,
            [
                (":status".into(), 3),
                ("content-type".into(), 9),
                ("x-long".into(), 20_000)
            ]
        );
        assert!(c.is_idle());
    }

    #[test]
    fn send_call_state_errors() {
        let mut c = open(Limits::default());
        feed(&mut c, &headers(1, &POST, false)).expect("request");
        let id = StreamId(1);
        assert_eq!(
            c.send_data(id, b"x", false),
            Err(SendError::State("no response head sent"))
        );
        assert_eq!(c.send_response(id, 101, [], false), Err(SendError::Status));
        assert_eq!(c.send_response(id, 103, [], true), Err(SendError::Status));
        assert_eq!(c.send_response(id, 103, [], false), Ok(()));
        assert_eq!(c.send_response(id, 200, [], false), Ok(()));
        assert_eq!(
            c.send_response(id, 200, [], false),
            Err(SendError::State("response head already sent"))
        );
        assert_eq!(
            c.send_trailers(id, [(&b"grpc-status"[..], &b"0"[..])]),
            Ok(())
        );
        assert_eq!(
            c.send_data(id, b"x", true),
            Err(SendError::State("response already ended"))
        );
        assert_eq!(
            c.send_data(StreamId(3), b"x", true),
            Err(SendError::UnknownStream)
        );
    }

    #[test]
    fn s6_9_send_window_capacity_events() {
        let mut c = open(Limits::default());
        feed(&mut c, &headers(1, &GET, true)).expect("request");
        let id = StreamId(1);
        c.send_response(id, 200, [], false).expect("head");
        let body = vec![b'x'; 100_000];
        assert_eq!(c.send_data(id, &body, true), Ok(65_535));
        assert_eq!(c.send_capacity(id), 0);
        let frames = drain(&mut c);
        assert!(
            frames
                .iter()
                .all(|(h, p)| p.len() <= 16_384 && h.flags & flag::END_STREAM == 0)
        );
        // A stream update alone opens nothing: the connection window is empty too.
        assert_eq!(
            feed(&mut c, &frame(kind::WINDOW_UPDATE, 0, 1, &[0, 1, 0, 0])),
            Ok(vec![])
        );
        assert_eq!(
            feed(&mut c, &frame(kind::WINDOW_UPDATE, 0, 0, &[0, 1, 0, 0])),
            Ok(vec![Ev::Capacity(1)])
        );
        assert_eq!(c.send_data(id, &body[65_535..], true), Ok(34_465));
        assert!(c.is_idle());
        // §6.9.2: a smaller initial window shrinks open streams' windows below zero.
        feed(&mut c, &headers(3, &GET, true)).expect("request");
        c.send_response(StreamId(3), 200, [], false).expect("head");
        assert_eq!(c.send_data(StreamId(3), &[0; 1000], false), Ok(1000));
        feed(&mut c, &frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 10])).expect("settings");
        assert_eq!(c.send_capacity(StreamId(3)), 0);
        assert_eq!(
            feed(&mut c, &frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 4, 0])),
            Ok(vec![])
        );
        assert_eq!(c.send_capacity(StreamId(3)), 24);
    }

    #[test]
    fn s6_9_receive_windows_follow_release() {
        let limits = Limits::default();
        let mut c = open(limits.clone());
        feed(&mut c, &headers(1, &POST, false)).expect("request");
        // Fill the stream window without releasing: more is a stream FLOW_CONTROL_ERROR.
        let chunk = data(1, 16_384, false);
        for _ in 0..limits.stream_window / 16_384 {
            assert_eq!(feed(&mut c, &chunk).map(|e| e.len()), Ok(1));
        }
        assert!(drain(&mut c).is_empty(), "no window update before release");
        assert_eq!(
            feed(&mut c, &data(1, 1, false)),
            Ok(vec![Ev::Reset(1, ErrorCode::FlowControl)])
        );
        // A second stream: releasing half a window sends a stream WINDOW_UPDATE; the
        // connection's follows at half the connection window.
        feed(&mut c, &headers(3, &POST, false)).expect("request");
        drain(&mut c);
        for _ in 0..8 {
            feed(&mut c, &data(3, 16_384, false)).expect("data");
            c.release(StreamId(3), 16_384);
        }
        let updates: Vec<(u32, u32)> = drain(&mut c)
            .into_iter()
            .filter(|(h, _)| h.kind == kind::WINDOW_UPDATE)
            .map(|(h, p)| (h.stream, frame::be_u32(&p)))
            .collect();
        assert_eq!(updates, [(3, 131_072)]);
        // The reset stream's unreleased bytes and the refused byte went back to the
        // connection: 262 144 + 1 + 131 072 + 131 072 crosses half of 1 MiB.
        for _ in 0..8 {
            feed(&mut c, &data(3, 16_384, false)).expect("data");
            c.release(StreamId(3), 16_384);
        }
        let updates: Vec<(u32, u32)> = drain(&mut c)
            .into_iter()
            .filter(|(h, _)| h.kind == kind::WINDOW_UPDATE)
            .map(|(h, p)| (h.stream, frame::be_u32(&p)))
            .collect();
        assert_eq!(updates, [(3, 131_072), (0, 524_289)]);
        // The connection window is enforced across streams.
        let mut c = open(limits.clone());
        for i in 0..5u32 {
            feed(&mut c, &headers(1 + 2 * i, &POST, false)).expect("request");
            for _ in 0..(limits.stream_window / 16_384) {
                if i == 4 && c.recv_window < 16_384 {
                    break;
                }
                feed(&mut c, &data(1 + 2 * i, 16_384, false)).expect("within windows");
            }
        }
        assert_eq!(
            feed(&mut c, &data(9, 16_384, false)).map_err(|e| e.code()),
            Err(ErrorCode::FlowControl)
        );
    }

    #[test]
    fn limit_header_list_size_answers_431() {
        let mut c = open(Limits::default());
        let big = "c".repeat(100);
        let mut fields = GET.to_vec();
        for _ in 0..200 {
            fields.push(("x-big", &big));
        }
        // 200 fields of 137 bytes: over 16 KiB and over 96 fields, spread over frames.
        let b = block(&fields);
        let (a, rest) = b.split_at(16_000);
        let bytes = [
            frame(kind::HEADERS, 0, 1, a),
            frame(kind::CONTINUATION, flag::END_HEADERS, 1, rest),
            data(1, 10, true),
        ]
        .concat();
        assert_eq!(feed(&mut c, &bytes), Ok(vec![Ev::TooLarge(1)]));
        c.send_response(StreamId(1), 431, [], true).expect("431");
        assert!(c.is_idle());
        // Too large with the body still coming: the 431 stops it with NO_ERROR.
        let bytes = [
            frame(kind::HEADERS, 0, 3, a),
            frame(kind::CONTINUATION, flag::END_HEADERS, 3, rest),
        ]
        .concat();
        assert_eq!(feed(&mut c, &bytes), Ok(vec![Ev::TooLarge(3)]));
        drain(&mut c);
        c.send_response(StreamId(3), 431, [], true).expect("431");
        assert_eq!(resets(&mut c), [(3, ErrorCode::NoError)]);
    }

    #[test]
    fn limit_field_count() {
        let mut c = open(Limits::default());
        let mut fields = GET.to_vec();
        fields.extend(std::iter::repeat_n(("a", "b"), 96));
        assert_eq!(
            feed(&mut c, &headers(1, &fields, true)).map(|e| e.len()),
            Ok(1)
        );
        fields.push(("a", "b"));
        assert_eq!(
            feed(&mut c, &headers(3, &fields, true)),
            Ok(vec![Ev::TooLarge(3)])
        );
    }

    #[test]
    fn limit_header_block_bytes_and_continuation_count() {
        let mut c = open(Limits::default());
        let mut bytes = frame(kind::HEADERS, 0, 1, &[0; 16_384]);
        for _ in 0..3 {
            bytes.extend(frame(kind::CONTINUATION, 0, 1, &[0; 16_384]));
        }
        bytes.extend(frame(kind::CONTINUATION, 0, 1, &[0; 1]));
        assert_eq!(
            feed(&mut c, &bytes),
            Err(ConnError::Calm("field block too large"))
        );
        assert_eq!(goaway(&mut c), Some(ErrorCode::EnhanceYourCalm));

        let mut c = open(Limits::default());
        let mut bytes = frame(kind::HEADERS, 0, 1, &block(&GET));
        for _ in 0..17 {
            bytes.extend(frame(kind::CONTINUATION, 0, 1, &[]));
        }
        assert_eq!(
            feed(&mut c, &bytes),
            Err(ConnError::Calm("too many CONTINUATION frames"))
        );
    }

    #[test]
    fn limit_rapid_reset() {
        // Open and cancel streams: the burst, then ENHANCE_YOUR_CALM.
        let mut c = open(Limits::default());
        let mut n = 0;
        let err = loop {
            let id = 1 + 2 * n;
            let bytes = [
                headers(id, &GET, true),
                frame(kind::RST_STREAM, 0, id, &[0, 0, 0, 8]),
            ]
            .concat();
            match feed(&mut c, &bytes) {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
            assert!(n <= 200, "no limit");
        };
        assert_eq!(err, ConnError::Calm("too many streams reset"));
        assert_eq!(n, 128);
        // The same resets interleaved with as many completed responses are fine.
        let mut c = open(Limits::default());
        for i in 0..1000 {
            let id = 1 + 4 * i;
            feed(&mut c, &headers(id, &GET, true)).expect("request");
            respond(&mut c, id, 10);
            let bytes = [
                headers(id + 2, &GET, true),
                frame(kind::RST_STREAM, 0, id + 2, &[0, 0, 0, 8]),
            ]
            .concat();
            feed(&mut c, &bytes).expect("balanced resets");
            drain(&mut c);
        }
        // Refused streams count too.
        let mut c = open(Limits {
            max_concurrent_streams: 1,
            ..Limits::default()
        });
        feed(&mut c, &headers(1, &GET, true)).expect("request");
        let mut bytes = Vec::new();
        for i in 1..=200 {
            bytes.extend(headers(1 + 2 * i, &GET, true));
        }
        assert_eq!(
            feed(&mut c, &bytes),
            Err(ConnError::Calm("too many streams reset"))
        );
    }

    #[test]
    fn limit_control_frame_floods() {
        // PINGs while nothing is read: the ACK backlog.
        let limits = Limits {
            max_control_backlog: 100,
            ..Limits::default()
        };
        let mut c = open(limits.clone());
        let ping = frame(kind::PING, 0, 0, &[1; 8]);
        let r = (0..2000).try_for_each(|_| feed(&mut c, &ping).map(drop));
        assert_eq!(r, Err(ConnError::Calm("control frames queued unread")));
        // A reader that keeps up, even partly, resets the count.
        let mut c = open(limits);
        for _ in 0..500 {
            feed(&mut c, &[ping.clone(), ping.clone()].concat()).expect("read");
            let n = c.output().len();
            c.advance(n - 1);
            c.advance(1);
        }
        // PINGs read promptly, but no requests: the flood budget.
        let mut c = open(Limits::default());
        let r = (0..2000).try_for_each(|_| {
            let r = feed(&mut c, &ping).map(drop);
            drain(&mut c);
            r
        });
        assert_eq!(r, Err(ConnError::Calm("too many frames without requests")));
        // Each kind of empty frame counts.
        let empties = [
            ("settings", frame(kind::SETTINGS, 0, 0, &[])),
            ("priority", frame(kind::PRIORITY, 0, 3, &[0, 0, 0, 1, 0])),
            (
                "tiny window update",
                frame(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 0, 1]),
            ),
            ("unknown type", frame(0x20, 0, 0, &[])),
        ];
        for (name, f) in empties {
            let mut c = open(Limits::default());
            let r = (0..2000).try_for_each(|_| {
                let r = feed(&mut c, &f).map(drop);
                drain(&mut c);
                r
            });
            assert_eq!(
                r.map_err(|e| e.code()),
                Err(ErrorCode::EnhanceYourCalm),
                "{name}"
            );
        }
        let mut c = open(Limits::default());
        feed(&mut c, &headers(1, &POST, false)).expect("request");
        let r = (0..2000).try_for_each(|_| feed(&mut c, &data(1, 0, false)).map(drop));
        assert_eq!(r, Err(ConnError::Calm("too many frames without requests")));
        // Requests put tokens back: a PING per request goes on forever.
        let mut c = open(Limits::default());
        for i in 0..3000 {
            feed(
                &mut c,
                &[headers(1 + 2 * i, &GET, true), ping.clone()].concat(),
            )
            .expect("fine");
            respond(&mut c, 1 + 2 * i, 0);
            drain(&mut c);
        }
    }

    #[test]
    fn limit_output_buffer() {
        let limits = Limits::default();
        let mut c = open(limits.clone());
        // Big responses the peer does not read: send_data stops at the bound.
        feed(
            &mut c,
            &frame(kind::SETTINGS, 0, 0, &[0, 4, 0x7f, 0xff, 0xff, 0xff]),
        )
        .expect("settings");
        feed(&mut c, &frame(kind::WINDOW_UPDATE, 0, 0, &[0x7f, 0, 0, 0])).expect("update");
        feed(&mut c, &headers(1, &GET, true)).expect("request");
        c.send_response(StreamId(1), 200, [], false).expect("head");
        let body = vec![0u8; 1 << 20];
        let n = c.send_data(StreamId(1), &body, false).expect("some");
        assert!(n < body.len());
        assert!(c.output().len() <= limits.max_output as usize + 9 * 64);
        assert_eq!(
            c.send_response(StreamId(1), 200, [], false),
            Err(SendError::Blocked)
        );
        // And recv reads no more frames until it is written out.
        let pings = [
            frame(kind::PING, 0, 0, &[1; 8]),
            frame(kind::PING, 0, 0, &[2; 8]),
        ]
        .concat();
        let r = c.recv(&pings).expect("recv");
        assert_eq!((r.consumed, r.event.is_none()), (0, true));
        drain(&mut c);
        assert_eq!(
            c.recv(&[]).map(|r| r.event.map(summary)),
            Ok(Some(Ev::Capacity(1)))
        );
        assert_eq!(c.recv(&pings).map(|r| r.consumed), Ok(pings.len()));
    }

    #[test]
    fn s6_8_goaway_both_ways() {
        let mut c = open(Limits::default());
        feed(&mut c, &headers(1, &GET, true)).expect("request");
        c.go_away(ErrorCode::NoError);
        let out = drain(&mut c);
        assert_eq!(out[0].0.kind, kind::GOAWAY);
        assert_eq!(frame::be_u32(&out[0].1), 1);
        // Streams opened after it are ignored, not refused.
        assert_eq!(feed(&mut c, &headers(3, &GET, true)), Ok(vec![]));
        assert!(resets(&mut c).is_empty());
        respond(&mut c, 1, 3);
        assert!(c.is_idle());
        let bytes = frame(kind::GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(
            feed(&mut c, &bytes),
            Ok(vec![Ev::GoAway(ErrorCode::Internal)])
        );
    }

    /// A graceful shutdown in two steps: the notice names no stream (the client stops opening
    /// them), a stream already on its way is still taken; the last GOAWAY names it.
    #[test]
    fn s6_8_a_notice_first_takes_the_streams_already_sent() {
        let mut c = open(Limits::default());
        feed(&mut c, &headers(1, &GET, true)).expect("request");
        c.go_away_notice();
        let out = drain(&mut c);
        assert_eq!(out[0].0.kind, kind::GOAWAY);
        assert_eq!(frame::be_u32(&out[0].1), 0x7fff_ffff);
        assert_eq!(frame::be_u32(&out[0].1[4..]), 0, "NO_ERROR");
        // Sent before the client read the notice: served.
        let taken = feed(&mut c, &headers(3, &GET, true)).expect("taken");
        assert_eq!(taken.len(), 1, "{taken:?}");
        c.go_away(ErrorCode::NoError);
        let out = drain(&mut c);
        assert_eq!(
            frame::be_u32(&out[0].1),
            3,
            "the last GOAWAY names stream 3"
        );
        assert_eq!(feed(&mut c, &headers(5, &GET, true)), Ok(vec![]));
    }

    #[test]
    fn s6_1_padding_is_flow_controlled_and_given_back() {
        let mut c = open(Limits::default());
        feed(&mut c, &headers(1, &POST, false)).expect("request");
        let mut p = vec![200u8];
        p.extend([b'x'; 10]);
        p.extend([0u8; 200]);
        let padded = frame(kind::DATA, flag::PADDED, 1, &p);
        assert_eq!(feed(&mut c, &padded), Ok(vec![Ev::Data(1, 10, false)]));
        assert_eq!(c.streams[0].held, 10);
        assert_eq!(c.recv_unacked, 201);
    }
}
