//! What every Apiary program does at its edge.
//!
//! - Its man page and shell completions, generated from the same clap definition that
//!   parses its arguments (so they never drift): `PROGRAM --manpage` and `PROGRAM
//!   --completions bash|zsh|fish|elvish|powershell`; `scripts/docs` writes them all. Both
//!   flags are hidden from `--help`.
//! - A failure as one line: the error and each cause once.
//! - A closed pipe on stdout or stderr (`| head`): a command ends quietly, as other Unix
//!   tools do; a service (the node, the pool) drops the lines nobody reads and runs on.

use clap::Command;
use std::io::Write;

/// Lets a write to a closed stdout or stderr end this program as other Unix tools end:
/// killed by SIGPIPE (status 141 in a shell), quietly, instead of a panic with a
/// backtrace. For commands that end when their reader does; a long-lived service keeps
/// SIGPIPE ignored and writes its lines with `say!`. Sockets are not affected: std, tokio
/// and ureq write to them with MSG_NOSIGNAL.
pub fn end_quietly_on_closed_pipe() {
    // SAFETY: sets a signal's disposition to its default before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Writes one line to stderr, and drops it when nobody reads stderr any more (a closed
/// pipe): a service's log line never stops the service (`eprintln!` would panic).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::write_stderr_line(format_args!($($arg)*))
    };
}

#[doc(hidden)]
pub fn write_stderr_line(line: std::fmt::Arguments) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Writes `bytes` to stdout whole. A reader that went away (a closed pipe) ends the
/// program with status 0, as if all was read; another failure with status 1.
pub fn write_stdout_or_exit(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        say!("error: cannot write: {e}");
        std::process::exit(1);
    }
}

/// What a command does first: ends quietly on a closed pipe, answers `--manpage` and
/// `--completions`, and parses its arguments (clap explains bad ones and exits 2).
pub fn start<A: clap::Parser>() -> A {
    end_quietly_on_closed_pipe();
    serve_docs(A::command);
    A::parse()
}

/// What a command does last: a failure is one line on stderr (no backtrace: it is about
/// the user's input, files or nodes) and exit status 1.
pub fn finish(result: anyhow::Result<()>) {
    if let Err(error) = result {
        say!("error: {}", error_line(&error));
        std::process::exit(1);
    }
}

/// Handles `--manpage` or `--completions SHELL` when it is the only argument: prints what
/// was asked for and exits. Call it before parsing, with the program's command.
pub fn serve_docs(command: impl FnOnce() -> Command) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let request = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["--manpage"] => Request::Manpage,
        ["--completions", shell] => match shell.parse::<clap_complete::Shell>() {
            Ok(shell) => Request::Completions(shell),
            Err(e) => {
                say!("error: {e}; try bash, zsh, fish, elvish or powershell");
                std::process::exit(2);
            }
        },
        _ => return,
    };
    let mut command = command();
    let name = command.get_name().to_string();
    // Rendered whole first: clap_complete panics when its writer fails (a closed pipe).
    let mut text = Vec::new();
    match request {
        Request::Manpage => clap_mangen::Man::new(command)
            .render(&mut text)
            .expect("rendering into memory"),
        Request::Completions(shell) => {
            clap_complete::generate(shell, &mut command, name, &mut text)
        }
    }
    write_stdout_or_exit(&text);
    std::process::exit(0);
}

enum Request {
    Manpage,
    Completions(clap_complete::Shell),
}

/// The candidate nearest `name`, if one is near enough to be a typo of it (Jaro-Winkler
/// above 0.8, as clap's own suggestions).
pub fn nearest<'a, S: AsRef<str> + ?Sized + 'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a S>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c.as_ref()), c.as_ref()))
        .filter(|(similarity, _)| *similarity > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `error` and its causes as one line, each said once: many errors already name their
/// cause in their own message, and printing the chain as well would say it twice.
pub fn error_line(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read spec: {source}")]
    struct Says {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_said_is_not_repeated() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let said = anyhow::Error::new(Says { source: io() }).context("starting");
        assert_eq!(
            error_line(&said),
            "starting: cannot read spec: no such file"
        );
        let unsaid = anyhow::Error::new(io()).context("cannot open x");
        assert_eq!(error_line(&unsaid), "cannot open x: no such file");
    }
}
