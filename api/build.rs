fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/push.proto");
    let fds = protox::compile(["push.proto"], ["proto"])?;
    // Resource bodies are shared between the proxies that get them: `Bytes` clones by reference.
    tonic_prost_build::configure()
        .bytes(".trellis.push.v1")
        .compile_fds(fds)?;
    Ok(())
}
