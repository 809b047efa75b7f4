//! The server never panics on input, and the surest way to keep it so is to give it nothing
//! that panics: no `unwrap()`, `expect(…)`, `panic!`, `unreachable!`, `todo!` or
//! `unimplemented!` in `src/` outside the unit tests. Each file's tests are one
//! `#[cfg(test)] mod tests { … }` at its end; this test checks that too, since it is where
//! the scan stops.

use std::path::{Path, PathBuf};

const FORBIDDEN: [&str; 6] = [".unwrap()", ".expect(", "panic!(", "unreachable!(", "todo!(", "unimplemented!("];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The lines of `text` before its test module, or an error if the module is not the file's
/// last item.
fn code_lines(text: &str) -> Result<Vec<(usize, &str)>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let Some(at) = lines.iter().position(|l| l.starts_with("#[cfg(") && l.contains("test")) else {
        return Ok(lines.into_iter().enumerate().collect());
    };
    if !lines.get(at + 1).is_some_and(|l| l.starts_with("mod tests {")) {
        return Err(format!("line {}: a test cfg not followed by `mod tests {{`", at + 1));
    }
    // The module's closing brace is the only line at column 0 that is `}` after it, and last.
    let closing: Vec<usize> = (at + 2..lines.len()).filter(|&k| lines[k] == "}").collect();
    let last = lines.iter().rposition(|l| !l.trim().is_empty()).unwrap_or(0);
    if closing != [last] {
        return Err(format!("line {}: `mod tests` is not the file's last item", at + 2));
    }
    Ok(lines.into_iter().enumerate().take(at).collect())
}

#[test]
fn no_code_outside_the_unit_tests_can_panic_by_unwrap_expect_or_panic() {
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    assert!(files.len() > 10, "found only {files:?}");
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        match code_lines(&text) {
            Err(why) => found.push(format!("{}: {why}", f.display())),
            Ok(lines) => {
                for (k, line) in lines {
                    let code = line.split("//").next().unwrap_or("");
                    if let Some(bad) = FORBIDDEN.iter().find(|b| code.contains(*b)) {
                        found.push(format!("{}:{}: {bad} in `{}`", f.display(), k + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_scan_sees_what_it_looks_for() {
    // A file with an unwrap before its tests is caught; one inside them is not; a test
    // module that is not last is an error.
    let text = "fn f() { x.unwrap(); }\n#[cfg(test)]\nmod tests {\n    fn g() { y.unwrap(); }\n}\n";
    let lines = code_lines(text).unwrap();
    assert_eq!(lines, vec![(0, "fn f() { x.unwrap(); }")]);
    assert!(code_lines("#[cfg(test)]\nmod tests {\n}\nfn late() {}\n}\n").is_err());
    assert!(code_lines("#[cfg(test)]\nfn alone() {}\n").is_err());
    assert_eq!(code_lines("fn f() {}\n").unwrap().len(), 1);
}
