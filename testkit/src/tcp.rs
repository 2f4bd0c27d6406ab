//! Opaque TCP echo upstream: greets each connection with `"<name>\n"`, then echoes bytes.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::server::{Running, echo_bytes, spawn_accept};

/// A running TCP echo server; stops (closing all connections) when dropped.
pub struct TcpEchoServer {
    name: String,
    running: Running,
}

impl TcpEchoServer {
    /// Starts on `127.0.0.1:0`.
    pub async fn start(name: &str) -> TcpEchoServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind tcp echo server");
        let greeting = format!("{name}\n");
        let running = spawn_accept(listener, move |stream, _| {
            let greeting = greeting.clone();
            async move { echo_bytes(greeting.as_bytes(), stream).await }
        });
        TcpEchoServer {
            name: name.to_string(),
            running,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.addr()
    }

    /// Connections accepted since start.
    pub fn connections(&self) -> usize {
        self.running.total_connections()
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.running.open_connections()
    }

    /// Stops and waits until the port refuses connections.
    pub async fn shutdown(mut self) {
        self.running.shutdown().await;
    }
}
