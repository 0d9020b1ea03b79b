//! Embeds every file under `infra/` (the default stack: stack.yaml, the kind config, connector
//! files, manifests) so the binary works from any directory. Generates `$OUT_DIR/embedded.rs`:
//! `const EMBEDDED: &[(&str, &str)]`, paths relative to `infra/`, sorted.

use std::path::Path;

fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("infra/ is readable").flatten().collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, base, out);
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")) {
            let rel = path.strip_prefix(base).expect("under infra/").to_string_lossy().replace('\\', "/");
            out.push((rel, path.canonicalize().expect("canonical").display().to_string()));
        }
    }
}

fn main() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("infra");
    println!("cargo:rerun-if-changed=infra");
    let mut files = Vec::new();
    walk(&base, &base, &mut files);
    let mut code = String::from("pub(crate) const EMBEDDED: &[(&str, &str)] = &[\n");
    for (rel, abs) in &files {
        code.push_str(&format!("    ({rel:?}, include_str!({abs:?})),\n"));
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("embedded.rs");
    std::fs::write(out, code).expect("write embedded.rs");
}
