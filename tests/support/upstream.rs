//! A scripted DNS upstream on loopback: answers every question with `192.0.2.1` after a
//! delay while it is answering, or reads and stays silent (an upstream gone dark), and counts
//! the questions it was asked by name. Unbound cannot be told to stay silent or slow.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// The address every answer carries.
pub(crate) const ANSWER: [u8; 4] = [192, 0, 2, 1];

/// A running scripted upstream; stops on drop.
pub(crate) struct Scripted {
    /// Its UDP port on 127.0.0.1.
    pub(crate) port: u16,
    answering: Arc<AtomicBool>,
    seen: Arc<Mutex<HashMap<String, usize>>>,
    stop: Arc<AtomicBool>,
}

impl Scripted {
    /// Starts one that answers after `delay` while answering (`answering` at first).
    pub(crate) fn start(delay: Duration, answering: bool) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the upstream");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let port = socket.local_addr().expect("addr").port();
        let sender = socket.try_clone().expect("clone the socket");
        let answering = Arc::new(AtomicBool::new(answering));
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        // Replies wait their delay in order on a thread of their own.
        let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>, SocketAddr)>();
        std::thread::spawn(move || {
            while let Ok((due, reply, to)) = rx.recv() {
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                let _ = sender.send_to(&reply, to);
            }
        });
        let (on, names, stopped) = (Arc::clone(&answering), Arc::clone(&seen), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Some((name, question_end)) = question(&buf[..n]) else {
                    continue;
                };
                *names.lock().expect("lock").entry(name).or_insert(0) += 1;
                if on.load(Ordering::Relaxed) {
                    let reply = answer(&buf[..question_end]);
                    let _ = tx.send((Instant::now() + delay, reply, from));
                }
            }
        });
        Self {
            port,
            answering,
            seen,
            stop,
        }
    }

    /// Starts or stops answering.
    pub(crate) fn set_answering(&self, on: bool) {
        self.answering.store(on, Ordering::Relaxed);
    }

    /// How often `name` (lower case, with the final dot) was asked.
    pub(crate) fn seen(&self, name: &str) -> usize {
        self.seen
            .lock()
            .expect("lock")
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// Questions asked in all.
    pub(crate) fn total(&self) -> usize {
        self.seen.lock().expect("lock").values().sum()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The question's name (lower case, final dot) and where the question section ends.
fn question(msg: &[u8]) -> Option<(String, usize)> {
    let mut i = 12;
    let mut name = String::new();
    loop {
        let len = usize::from(*msg.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        let label = msg.get(i..i + len)?;
        name.push_str(&String::from_utf8_lossy(label).to_lowercase());
        name.push('.');
        i += len;
    }
    let end = i + 4;
    (end <= msg.len()).then_some((name, end))
}

/// The reply to a query cut after its question: one A record.
fn answer(query: &[u8]) -> Vec<u8> {
    let mut r = query.to_vec();
    r[2] |= 0x80; // QR
    r[3] = 0x80; // RA, NOERROR
    r[4..12].copy_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0]);
    r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
    r.extend_from_slice(&ANSWER);
    r
}
