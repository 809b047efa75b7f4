//! Assembles the web client that the binary embeds: `client/` without its tests and npm
//! files, plus Bootstrap's built CSS and JS from `client/node_modules` (fetched by `make`,
//! never committed) under `vendor/`. The result goes to `$OUT_DIR/client`.

use std::fs;
use std::path::Path;

const SKIP: &[&str] = &["node_modules", "test", "package.json", "package-lock.json"];
const VENDOR: &[(&str, &str)] = &[
    ("bootstrap/dist/css/bootstrap.min.css", "bootstrap.min.css"),
    ("bootstrap/dist/js/bootstrap.bundle.min.js", "bootstrap.bundle.min.js"),
];

fn copy_tree(from: &Path, to: &Path, top: bool) {
    fs::create_dir_all(to).expect("create the client output folder");
    for entry in fs::read_dir(from).expect("read client/") {
        let entry = entry.expect("read client/");
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || (top && SKIP.contains(&name.as_ref())) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(&*name), false);
        } else {
            fs::copy(&path, to.join(&*name)).expect("copy a client file");
        }
    }
}

fn main() {
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("client");
    let _ = fs::remove_dir_all(&out);
    copy_tree(Path::new("client"), &out, true);
    let modules = Path::new("client/node_modules");
    fs::create_dir_all(out.join("vendor")).expect("create vendor/");
    for (from, to) in VENDOR {
        let src = modules.join(from);
        if !src.exists() {
            panic!(
                "\n\nsgp embeds Bootstrap from the npm registry, and {} is missing.\n\
                 Run `make` (it runs `npm ci` in client/), or `npm ci --prefix client`, then build again.\n\n",
                src.display()
            );
        }
        fs::copy(&src, out.join("vendor").join(to)).expect("copy a vendor file");
    }
    println!("cargo:rerun-if-changed=client");
    println!("cargo:rerun-if-changed=build.rs");
}
