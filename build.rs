//! Embeds every file under `static/` into the binary (the demo page works from any directory).
use std::fmt::Write as _;
use std::path::Path;

fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, base, out);
        } else if let Ok(rel) = p.strip_prefix(base) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

fn main() {
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let dir = Path::new(&root).join("static");
    println!("cargo:rerun-if-changed=static");
    let mut files = Vec::new();
    walk(&dir, &dir, &mut files);
    let mut code = String::from("/// (URL path, bytes) for every file under static/.\npub static FILES: &[(&str, &[u8])] = &[\n");
    for f in &files {
        println!("cargo:rerun-if-changed=static/{f}");
        let abs = dir.join(f);
        let _ = writeln!(
            code,
            "    (\"/{f}\", include_bytes!({:?})),",
            abs.to_string_lossy()
        );
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("static_files.rs");
    std::fs::write(out, code).unwrap();
}
