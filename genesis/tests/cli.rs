//! `apiary-genesis` as a user meets it: a spec is never replaced by accident, and a
//! mistake gets one line saying what is wrong.

use std::process::{Command, Output};

fn genesis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_apiary-genesis"))
        .args(args)
        // A backtrace would show here if one were printed.
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap()
}

fn one_line_error(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("error: "), "{text}");
    text
}

#[test]
fn new_refuses_to_overwrite_a_spec_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    let path_text = path.to_str().unwrap();
    let first = genesis(&["new", "--chain-id", "one", "-o", path_text]);
    assert!(first.status.success());
    let written = std::fs::read(&path).unwrap();
    let again = genesis(&["new", "--chain-id", "two", "-o", path_text]);
    assert!(one_line_error(&again).contains("--force"));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        written,
        "the spec is untouched"
    );
    let forced = genesis(&["new", "--chain-id", "two", "-o", path_text, "--force"]);
    assert!(forced.status.success());
    assert!(String::from_utf8_lossy(&std::fs::read(&path).unwrap()).contains("\"two\""));
}

#[test]
fn a_bad_address_is_one_line_without_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    let output = genesis(&[
        "new",
        "--chain-id",
        "one",
        "--alloc",
        "my1nothing=5",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(one_line_error(&output).contains("my1nothing"));
    assert!(!path.exists());
}

/// An address of another kind (bitcoin's bech32, a typo) is told which prefix this
/// chain's addresses have, and how to make one.
#[test]
fn a_foreign_address_is_told_the_expected_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    for foreign in ["bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "my1nothing"] {
        let output = genesis(&[
            "new",
            "--chain-id",
            "one",
            "--address-prefix",
            "one",
            "--alloc",
            &format!("{foreign}=5"),
            "-o",
            path.to_str().unwrap(),
        ]);
        let line = one_line_error(&output);
        assert!(line.contains("start with one1"), "{line}");
        assert!(line.contains("--address-prefix one"), "{line}");
        assert!(!path.exists());
    }
}

#[test]
fn an_os_error_is_said_once() {
    let output = genesis(&["hash", "/nonexistent/spec.toml"]);
    let line = one_line_error(&output);
    assert_eq!(line.matches("os error 2").count(), 1, "{line}");
}
