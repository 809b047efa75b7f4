//! Assembles the web client that the binary embeds: `client/` without its tests, notes and
//! npm files, plus Bootstrap's built CSS from `client/node_modules` (fetched by
//! `make`, never committed) under `vendor/`. The result goes to `$OUT_DIR/client`, and the
//! same tree with every file gzipped (what the binary embeds: a fifth of the size, served
//! as it is to browsers) to `$OUT_DIR/client.gz`.

use std::fs;
use std::io::Write;
use std::path::Path;

const SKIP: &[&str] = &["node_modules", "test", "package.json", "package-lock.json"];
/// Skipped at any depth: notes for developers, not for the page.
const SKIP_ANYWHERE: &[&str] = &["README.md"];
/// Bootstrap's CSS only: the page uses none of its JavaScript.
const VENDOR: &[(&str, &str)] = &[("bootstrap/dist/css/bootstrap.min.css", "bootstrap.min.css")];

fn copy_tree(from: &Path, to: &Path, top: bool) {
    fs::create_dir_all(to).expect("create the client output folder");
    for entry in fs::read_dir(from).expect("read client/") {
        let entry = entry.expect("read client/");
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || (top && SKIP.contains(&name.as_ref())) || SKIP_ANYWHERE.contains(&name.as_ref()) {
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

/// Copies `from` to `to` with every file gzipped at the best level, with no name and no
/// time in the header (a 10-byte header: `src/http.rs` relies on it), so builds repeat.
fn gzip_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create the gzipped client folder");
    for entry in fs::read_dir(from).expect("read the client output folder") {
        let path = entry.expect("read the client output folder").path();
        let dest = to.join(path.file_name().expect("a file name"));
        if path.is_dir() {
            gzip_tree(&path, &dest);
        } else {
            let data = fs::read(&path).expect("read a client file");
            let mut enc = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
            enc.write_all(&data).expect("gzip a client file");
            fs::write(&dest, enc.finish().expect("gzip a client file")).expect("write a gzipped client file");
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
    let gz = out.with_extension("gz");
    let _ = fs::remove_dir_all(&gz);
    gzip_tree(&out, &gz);
    println!("cargo:rerun-if-changed=client");
    println!("cargo:rerun-if-changed=build.rs");
}
