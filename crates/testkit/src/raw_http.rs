//! HTTP/1.1 requests written byte for byte: no client-side normalisation of the path
//! (as `curl --path-as-is`), headers as sent on the wire.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `head` (request line and headers; `Host` and `Connection: close` are added) plus
/// `body` to `base` (`http://host:port`) and returns the whole answer as text.
pub async fn exchange(base: &str, head: &str, body: &[u8]) -> String {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let request = format!("{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    // The server may close while the body is still being sent (413): what arrived counts.
    let _ = stream.read_to_end(&mut raw).await;
    String::from_utf8_lossy(&raw).into_owned()
}

/// The status code of a raw answer.
pub fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer}"))
}

/// The body of a raw answer (everything after the head; not de-chunked).
pub fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}
