//! External programs some tests need (a browser, promtool, PgBouncer, libfaketime, the
//! PostgreSQL binaries for a cluster of the test's own): a test without its tool says which
//! package to install and passes without running, except under CI (`CI` set, and not to `0` or
//! `false`, as `.ci/run` does), where a missing tool fails the test so that CI runs them all.

use std::io::Write;
use std::path::PathBuf;

/// `found`, or, when it is an error: under CI a panic; otherwise one line naming `package` on
/// stderr and `None`, for the test to return early.
pub fn tool_or_skip<T>(found: Result<T, String>, package: &str) -> Option<T> {
    match found {
        Ok(tool) => Some(tool),
        Err(missing) if under_ci() => {
            panic!("{missing} (install Debian's `{package}`; CI runs every test)")
        }
        Err(missing) => {
            // Straight to stderr: the test harness captures `eprintln!` of a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: {missing}; install Debian's `{package}` to run this test"
            );
            None
        }
    }
}

/// Whether `CI` is set to something other than empty, `0` or `false`.
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !matches!(value.trim(), "" | "0" | "false"))
}

/// The program named by the environment variable `variable` when set, else the first of
/// `candidates` (absolute paths or names looked up on the `PATH`) that is a file.
pub fn find_program(variable: &str, candidates: &[&str]) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(variable) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{variable}={} is not a file", path.display()))
        };
    }
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    candidates
        .iter()
        .flat_map(|candidate| {
            let candidate = PathBuf::from(candidate);
            if candidate.is_absolute() {
                vec![candidate]
            } else {
                on_path.iter().map(|dir| dir.join(&candidate)).collect()
            }
        })
        .find(|path| path.is_file())
        .ok_or_else(|| format!("{} not found (nor {variable} set)", candidates.join(" or ")))
}
