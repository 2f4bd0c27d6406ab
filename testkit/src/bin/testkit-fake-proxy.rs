//! Stand-in for `trellis-proxy` in testkit's own tests: prints its arguments, then answers
//! every connection on `--admin ADDR` with `200 OK` (so `GET /ready` succeeds).

use std::io::{Read, Write};
use std::net::TcpListener;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("args: {}", args.join(" "));
    let admin = args
        .iter()
        .position(|a| a == "--admin")
        .and_then(|i| args.get(i + 1))
        .expect("--admin ADDR");
    let listener = match TcpListener::bind(admin) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bind {admin}: {e}");
            std::process::exit(1);
        }
    };
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    }
}
