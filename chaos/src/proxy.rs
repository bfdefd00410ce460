//! A TCP proxy on loopback that can be cut: every open connection is dropped and new
//! ones are refused until it is restored. Put between the producer and Kinesis to
//! simulate a broken network path.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

struct State {
    cut: bool,
    /// Cancelled on a cut: ends every connection opened before it.
    generation: CancellationToken,
}

pub struct CutProxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl CutProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<CutProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            cut: false,
            generation: CancellationToken::new(),
        }));
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, upstream, state.clone(), stop.clone()));
        Ok(CutProxy { addr, state, stop })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.cut = true;
        s.generation.cancel();
    }

    pub fn restore(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.cut = false;
        s.generation = CancellationToken::new();
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
) {
    loop {
        let (client, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let token = {
            let s = state.lock().unwrap_or_else(|e| e.into_inner());
            if s.cut {
                // Refused: dropped at once.
                continue;
            }
            s.generation.clone()
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = pipe(client, upstream) => {}
            }
        });
    }
}

async fn pipe(mut client: TcpStream, upstream: SocketAddr) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn echo(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut c = TcpStream::connect(addr).await?;
        c.write_all(b"hi").await?;
        let mut buf = [0u8; 2];
        c.read_exact(&mut buf).await?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn forwards_cuts_and_restores() {
        let proxy = CutProxy::start(echo_server().await).await.unwrap();
        assert_eq!(echo(proxy.addr).await.unwrap(), b"hi");
        let mut open = TcpStream::connect(proxy.addr).await.unwrap();
        open.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        open.read_exact(&mut one).await.unwrap();
        proxy.cut();
        // The open connection is dropped, a new one gets nothing back.
        assert_eq!(open.read(&mut one).await.unwrap_or(0), 0);
        assert!(echo(proxy.addr).await.is_err());
        proxy.restore();
        assert_eq!(echo(proxy.addr).await.unwrap(), b"hi");
    }
}
