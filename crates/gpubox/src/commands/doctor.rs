//! `gpubox doctor`: the host's checks, one line each and the fix under every
//! problem, or as JSON.

use std::io::Write;

use gpubox_host::doctor::{healthy, Check};
use serde_json::json;

/// Writes the checks as a report or as JSON.
pub fn report(checks: &[Check], as_json: bool, out: &mut dyn Write) -> std::io::Result<()> {
    if as_json {
        let value = json!({
            "ok": healthy(checks),
            "checks": checks.iter().map(|c| json!({
                "name": c.name,
                "status": c.status.word(),
                "message": c.message,
                "fix": c.fix,
            })).collect::<Vec<_>>(),
        });
        serde_json::to_writer_pretty(&mut *out, &value)?;
        return writeln!(out);
    }
    for check in checks {
        writeln!(
            out,
            "{:<4}  {:<9} {}",
            check.status.word().to_uppercase(),
            check.name,
            check.message
        )?;
        if let Some(fix) = &check.fix {
            writeln!(out, "      {:<9} fix: {fix}", "")?;
        }
    }
    Ok(())
}
