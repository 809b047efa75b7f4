//! Assembles the web client that the binary embeds: `client/` without its tests, notes and
//! npm files. Bootstrap's built CSS comes from the committed copy in `client/vendor/`, so the
//! build needs neither Node nor npm (`cargo install --path .` works without them); `make
//! test-install` checks that copy byte for byte against the npm package (`make vendor`
//! refreshes it). The result goes to `$OUT_DIR/client`, and the same tree with every file
//! gzipped (what the binary embeds: a fifth of the size, served as it is to browsers) to
//! `$OUT_DIR/client.gz`.

use std::fs;
use std::io::Write;
use std::path::Path;

const SKIP: &[&str] = &["node_modules", "test", "package.json", "package-lock.json"];
/// Skipped at any depth: notes for developers, not for the page.
const SKIP_ANYWHERE: &[&str] = &["README.md"];
/// What the page loads from `client/vendor/`: Bootstrap's CSS only (none of its JavaScript,
/// and the CSS asks for no fonts or images: its icons are `data:` URLs).
const VENDOR: &[&str] = &["bootstrap.min.css"];

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
    for name in VENDOR {
        let src = Path::new("client/vendor").join(name);
        if !src.is_file() {
            // One line, which cargo shows as `error: sgp@VERSION: …` and fails the build.
            println!("cargo::error=sgp embeds {} and it is missing: restore it with `git checkout -- client/vendor`, or `make vendor` to copy it from the npm package", src.display());
            return;
        }
    }
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("client");
    let _ = fs::remove_dir_all(&out);
    copy_tree(Path::new("client"), &out, true);
    let gz = out.with_extension("gz");
    let _ = fs::remove_dir_all(&gz);
    gzip_tree(&out, &gz);
    println!("cargo:rerun-if-changed=client");
    println!("cargo:rerun-if-changed=build.rs");
}
