//! `trellis demo` refuses to start, with a message naming the problem and the flag that fixes it,
//! when an address it needs is taken or a flag is out of range, and leaves nothing running.

use std::net::TcpListener;
use std::process::{Command, Output};

const TRELLIS: &str = env!("CARGO_BIN_EXE_trellis");

fn demo(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(TRELLIS)
        .arg("demo")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("trellis runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_taken_port_is_named_with_its_flag_and_nothing_starts() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let output = demo(&data, &["--console", &addr, "--duration", "1s"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains(&format!("{addr} (--console)")),
        "the message names the address and its flag: {err}"
    );
    assert!(err.contains("trellis demo --help"), "{err}");
    // Refused before anything started: no data directory, no logs.
    assert!(!data.exists(), "nothing is created when the demo refuses");
}

#[test]
fn out_of_range_flags_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = demo(dir.path(), &["--rate=-1"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("--rate -1: must be from 0 to 1000"),
        "{}",
        stderr(&output)
    );
    let output = demo(dir.path(), &["--ports-from", "65530"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("--ports-from 65530"),
        "{}",
        stderr(&output)
    );
    let output = demo(dir.path(), &["--duration", "soon"]);
    assert_eq!(output.status.code(), Some(2), "clap refuses a bad duration");
    assert!(stderr(&output).contains("\"soon\" is not a duration"));
}
