//! `cargo bench`: the same figures as `lockcheck bench benches/spin benches/scale`.

fn main() {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_lockcheck"));
    let dirs = ["benches/spin", "benches/scale"].map(std::path::PathBuf::from);
    match lockcheck::bench::run(exe, &dirs) {
        Ok(rows) => {
            lockcheck::bench::print(&rows, &mut std::io::stdout()).expect("stdout");
            if let Err(e) = lockcheck::bench::sim(
                std::path::Path::new("benches/sim/redis_5hosts.toml"),
                200,
                &mut std::io::stdout(),
            ) {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
