use clap::Parser;

fn main() {
    let args = loadtest::cli::Args::parse();
    std::process::exit(loadtest::run(args));
}
