//! A small HTTP/1.1 server on 127.0.0.1 for tests of url sources: fixed answers per path,
//! including redirects, errors, oversized bodies and answers that never come. It runs until the
//! test's runtime ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the server answers on a path.
#[derive(Clone, Debug)]
pub enum Answer {
    /// 200 with this body.
    Body(Vec<u8>),
    /// A redirect to this location.
    Redirect(String),
    /// This status with an empty body.
    Status(u16),
    /// 200 that claims `Content-Length` bytes and sends them slowly, never finishing in time.
    Stall,
    /// 200 without a length whose body is `n` bytes long.
    Unsized(usize),
}

/// A running test server.
#[derive(Debug)]
pub struct TestHttpServer {
    pub address: SocketAddr,
}

impl TestHttpServer {
    /// Starts the server with `answers` by path.
    pub async fn start(answers: HashMap<String, Answer>) -> std::io::Result<TestHttpServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let answers = Arc::new(answers);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let answers = answers.clone();
                tokio::spawn(async move {
                    let mut request = vec![0u8; 4096];
                    let n = stream.read(&mut request).await.unwrap_or(0);
                    let text = String::from_utf8_lossy(&request[..n]);
                    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let head =
                        |status: &str, extra: &str| format!("HTTP/1.1 {status}\r\nConnection: close\r\n{extra}\r\n");
                    match answers.get(&path).cloned().unwrap_or(Answer::Status(404)) {
                        Answer::Body(body) => {
                            let _ = stream
                                .write_all(head("200 OK", &format!("Content-Length: {}\r\n", body.len())).as_bytes())
                                .await;
                            let _ = stream.write_all(&body).await;
                        }
                        Answer::Redirect(location) => {
                            let extra = format!("Location: {location}\r\nContent-Length: 0\r\n");
                            let _ = stream.write_all(head("302 Found", &extra).as_bytes()).await;
                        }
                        Answer::Status(code) => {
                            let _ = stream
                                .write_all(head(&format!("{code} Test"), "Content-Length: 0\r\n").as_bytes())
                                .await;
                        }
                        Answer::Stall => {
                            let _ = stream.write_all(head("200 OK", "Content-Length: 1000\r\n").as_bytes()).await;
                            for _ in 0..600 {
                                if stream.write_all(b"x").await.is_err() {
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                        Answer::Unsized(n) => {
                            let _ = stream.write_all(head("200 OK", "").as_bytes()).await;
                            let _ = stream.write_all(&vec![b'a'; n]).await;
                        }
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(TestHttpServer { address })
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}
