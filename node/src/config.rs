//! The node's config file: TOML with a key for every flag (the flag's name, `rpc-addr` or
//! `rpc_addr`), worked out from the flags themselves so the two never drift. A flag given
//! on the command line wins over the file; the file wins over defaults.

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Flags a file never sets: the file itself, printing it, and one-time actions (a
/// `reindex = true` left in a file would rebuild the store at every start).
pub const NOT_IN_FILE: &[&str] = &[
    "config",
    "print_config",
    "reindex",
    "resync",
    "help",
    "version",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("config file {path}: {message}")]
    Key { path: PathBuf, message: String },
}

/// The flag a file key names (`rpc-addr` or `rpc_addr` for --rpc-addr), if any.
fn arg_for<'a>(command: &'a Command, key: &str) -> Option<&'a clap::Arg> {
    let long = key.replace('_', "-");
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(long.as_str()))
}

/// Command-line arguments for what the file at `path` says, leaving out every key the
/// command line (`given`) already set.
pub fn file_args(
    command: &Command,
    path: &Path,
    given: &ArgMatches,
) -> Result<Vec<OsString>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Toml {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })?;
    let key_error = |message: String| ConfigError::Key {
        path: path.to_path_buf(),
        message,
    };
    let mut args = Vec::new();
    for (key, value) in &table {
        let Some(arg) = arg_for(command, key) else {
            let known: Vec<String> = keys(command);
            let near = apiary_cmdline::nearest(key, &known)
                .map(|k| format!("; did you mean {k:?}?"))
                .unwrap_or_default();
            return Err(key_error(format!(
                "unknown key {key:?}{near} (`apiary-node --print-config` shows every key)"
            )));
        };
        let id = arg.get_id().as_str();
        if NOT_IN_FILE.contains(&id) {
            return Err(key_error(format!(
                "{key:?} cannot be set in a config file; give --{} on the command line",
                arg.get_long().unwrap_or(key)
            )));
        }
        if given.value_source(id) == Some(ValueSource::CommandLine) {
            continue;
        }
        let flag = OsString::from(format!("--{}", arg.get_long().unwrap_or(key)));
        match (arg.get_action(), value) {
            (ArgAction::SetTrue, toml::Value::Boolean(on)) => {
                if *on {
                    args.push(flag);
                }
            }
            (ArgAction::SetTrue, other) => {
                return Err(key_error(format!(
                    "{key} = {other}: expected true or false"
                )))
            }
            (ArgAction::Append, toml::Value::Array(items)) => {
                for item in items {
                    args.push(flag.clone());
                    args.push(scalar(key, item).map_err(key_error)?);
                }
            }
            (_, value) => {
                args.push(flag);
                args.push(scalar(key, value).map_err(key_error)?);
            }
        }
    }
    Ok(args)
}

fn scalar(key: &str, value: &toml::Value) -> Result<OsString, String> {
    match value {
        toml::Value::String(s) => Ok(s.into()),
        toml::Value::Integer(i) => Ok(i.to_string().into()),
        toml::Value::Float(f) => Ok(f.to_string().into()),
        toml::Value::Boolean(b) => Ok(b.to_string().into()),
        other => Err(format!(
            "{key} = {other}: expected a string or a number here"
        )),
    }
}

/// Every key a config file may hold, in the flags' order.
pub fn keys(command: &Command) -> Vec<String> {
    command
        .get_arguments()
        .filter(|a| !NOT_IN_FILE.contains(&a.get_id().as_str()))
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect()
}

/// The effective config as TOML: every key, with the value in force (unset ones
/// commented out), the flag's help as a comment.
pub fn render(command: &Command, matches: &ArgMatches) -> String {
    let mut out = String::from(
        "# apiary-node's effective config (apiary-node --print-config). Every key is a flag of\n\
         # the same name; flags given on the command line win over this file.\n",
    );
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if NOT_IN_FILE.contains(&id) {
            continue;
        }
        out.push('\n');
        if let Some(help) = arg.get_help() {
            for line in help.to_string().lines() {
                out.push_str(&format!("# {line}\n"));
            }
        }
        let line = match arg.get_action() {
            ArgAction::SetTrue => format!("{long} = {}", matches.get_flag(id)),
            action => {
                let raw: Vec<String> = matches
                    .get_raw(id)
                    .into_iter()
                    .flatten()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect();
                let value = |v: &String| match v.parse::<i64>() {
                    Ok(n) => n.to_string(),
                    Err(_) => toml::Value::String(v.clone()).to_string(),
                };
                match (action, raw.as_slice()) {
                    (ArgAction::Append, values) => format!(
                        "{long} = [{}]",
                        values.iter().map(value).collect::<Vec<_>>().join(", ")
                    ),
                    (_, [one]) => format!("{long} = {}", value(one)),
                    _ => format!("# {long} =  (not set)"),
                }
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, CommandFactory, FromArgMatches, Parser};

    #[derive(Parser, Debug)]
    struct Flags {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:1")]
        rpc_addr: String,
        #[arg(long = "peer")]
        peers: Vec<String>,
        #[arg(long)]
        mine: bool,
        #[arg(long, default_value_t = 8)]
        max_peers: u32,
        #[arg(long)]
        reindex: bool,
    }

    fn parse(cli: &[&str], file: &str) -> Result<Flags, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apiary.toml");
        std::fs::write(&path, file).unwrap();
        let command = Flags::command();
        let mut argv: Vec<OsString> = vec!["node".into()];
        argv.extend(cli.iter().map(OsString::from));
        let given = command.clone().try_get_matches_from(&argv).unwrap();
        let mut all: Vec<OsString> = vec!["node".into()];
        all.extend(file_args(&command, &path, &given).map_err(|e| e.to_string())?);
        all.extend(argv.into_iter().skip(1));
        let matches = command
            .try_get_matches_from(all)
            .map_err(|e| e.to_string())?;
        Flags::from_arg_matches(&matches).map_err(|e| e.to_string())
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = "rpc-addr = \"0.0.0.0:5\"\nmax_peers = 3\npeer = [\"a\", \"b\"]\nmine = true\n";
        let flags = parse(&[], file).unwrap();
        assert_eq!(flags.rpc_addr, "0.0.0.0:5");
        assert_eq!(flags.max_peers, 3);
        assert_eq!(flags.peers, ["a", "b"]);
        assert!(flags.mine);
        let flags = parse(&["--rpc-addr", "1.1.1.1:1", "--peer", "c"], file).unwrap();
        assert_eq!(flags.rpc_addr, "1.1.1.1:1");
        assert_eq!(
            flags.peers,
            ["c"],
            "a list on the command line replaces the file's"
        );
        assert_eq!(flags.max_peers, 3);
        let flags = parse(&[], "").unwrap();
        assert_eq!(
            (flags.rpc_addr.as_str(), flags.max_peers),
            ("127.0.0.1:1", 8)
        );
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        let unknown = parse(&[], "max_peer = 3").unwrap_err();
        assert!(unknown.contains("did you mean \"max-peers\""), "{unknown}");
        let action = parse(&[], "reindex = true").unwrap_err();
        assert!(action.contains("--reindex on the command line"), "{action}");
        let wrong = parse(&[], "max-peers = \"many\"").unwrap_err();
        assert!(wrong.contains("many"), "{wrong}");
        let flag = parse(&[], "mine = 1").unwrap_err();
        assert!(flag.contains("true or false"), "{flag}");
        assert!(parse(&[], "rpc-addr = ")
            .unwrap_err()
            .contains("not valid TOML"));
    }

    #[test]
    fn the_printed_config_reads_back_the_same() {
        let command = Flags::command().arg(Arg::new("extra").long("extra").required(false));
        let given = command
            .clone()
            .try_get_matches_from(["node", "--peer", "x", "--mine", "--max-peers", "4"])
            .unwrap();
        let text = render(&command, &given);
        assert!(!text.contains("reindex"), "{text}");
        let flags = parse(&[], &text).unwrap();
        assert_eq!(flags.peers, ["x"]);
        assert!(flags.mine);
        assert_eq!(flags.max_peers, 4);
        assert_eq!(flags.rpc_addr, "127.0.0.1:1");
    }
}
