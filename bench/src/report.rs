//! The results table in BENCHMARKS.md.

use super::*;

const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";

/// Rewrites the table between the bench markers, keeping rows of benchmarks not run now.
pub(crate) fn update_markdown(path: &PathBuf, results: &Map<String, Value>) -> Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (before, old_table, after) = match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) if b < e => (
            &text[..b],
            &text[b + BEGIN.len()..e],
            &text[e + END.len()..],
        ),
        _ => (text.as_str(), "", "\n"),
    };
    let mut rows: std::collections::BTreeMap<String, String> = old_table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| Some((l.split('`').nth(1)?.to_string(), l.to_string())))
        .collect();
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()?;
    let date = String::from_utf8_lossy(&date.stdout).trim().to_string();
    for (name, r) in results {
        rows.insert(
            name.clone(),
            format!(
                "| `{name}` | {} {} | {} | {} | `{}` | {date} |",
                r["value"],
                r["unit"].as_str().unwrap_or(""),
                r["limit"],
                r["ratio"],
                r["params"]
            ),
        );
    }
    let mut table = String::from(
        "\n| benchmark | value | limit (same run) | ratio | params | date |\n|---|---|---|---|---|---|\n",
    );
    for row in rows.values() {
        table.push_str(row);
        table.push('\n');
    }
    std::fs::write(path, format!("{before}{BEGIN}{table}{END}{after}"))?;
    Ok(())
}
