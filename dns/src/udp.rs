//! labgate's own UDP loop: each datagram is answered inline from the fast path's table when
//! it can be, else handed to the general path on its own task. No query is answered twice:
//! the fast path either writes the whole answer or declines before sending anything.

use std::sync::Arc;

use tokio::net::UdpSocket;

use crate::Handler;

/// Largest datagram read; anything longer is cut and then fails to parse.
const MAX_QUERY: usize = 4096;

/// Serves one UDP socket until the task is aborted.
pub(crate) async fn serve(handler: Handler, socket: Arc<UdpSocket>) {
    let mut query = vec![0u8; MAX_QUERY];
    let mut answer = vec![0u8; usize::from(crate::MAX_UDP_PAYLOAD)];
    loop {
        let Ok((n, src)) = socket.recv_from(&mut query).await else {
            // ICMP errors from earlier sends surface here on some systems: keep serving.
            continue;
        };
        let data = &query[..n];
        if let Some(len) = handler.fast_answer(src.ip(), data, &mut answer) {
            let _ = socket.send_to(&answer[..len], src).await;
            continue;
        }
        // PERF: only the general path allocates and spawns: forwarding may take seconds.
        let handler = handler.clone();
        let socket = Arc::clone(&socket);
        let data = data.to_vec();
        tokio::spawn(async move {
            if let Some(out) = handler.answer_bytes(&data, src).await {
                let _ = socket.send_to(&out, src).await;
            }
        });
    }
}
