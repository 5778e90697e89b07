//! What every Apiary program does at its edge.
//!
//! - Its man page and shell completions, generated from the same clap definition that
//!   parses its arguments (so they never drift): `PROGRAM --manpage` and `PROGRAM
//!   --completions bash|zsh|fish|elvish|powershell`; `scripts/docs` writes them all. Both
//!   flags are hidden from `--help`.
//! - A failure as one line: the error and each cause once.

use clap::Command;
use std::io::Write;

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
                eprintln!("error: {e}; try bash, zsh, fish, elvish or powershell");
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
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(&text).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write: {e}");
        std::process::exit(1);
    }
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
