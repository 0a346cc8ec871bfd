//! Records the git commit the binaries are built from (`--version` prints it, see
//! `po_runtime::cli::VERSION`): `PO_GIT_COMMIT`, the short hash of HEAD, or "unknown"
//! outside a git checkout (a source tarball, a vendored copy) or without git.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&dir, &["rev-parse", "--short", "HEAD"]);
    if commit.is_some() {
        // Rebuild when HEAD moves: HEAD itself (a checkout, a detached HEAD), the branch
        // it points at (a commit), and packed-refs (where `git gc` moves that branch).
        // `--git-path` answers for worktrees too, whose `.git` is a file and whose branch
        // refs live in the main repository's git directory. Only paths that exist are
        // named: cargo reruns a build script on every build for a missing one.
        let mut paths = vec!["HEAD".to_string(), "packed-refs".to_string()];
        if let Some(branch) = git(&dir, &["symbolic-ref", "-q", "HEAD"]) {
            paths.push(branch);
        }
        for p in paths {
            if let Some(path) = git(&dir, &["rev-parse", "--git-path", &p]) {
                let path = dir.join(path);
                if path.exists() {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
        }
    }
    println!(
        "cargo:rustc-env=PO_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
}
