//! `trellis analyze`: everything the control plane would say about a set of files, offline.
//! Each file is parsed and validated, the valid resources are put together in one set, and the
//! cross-resource checks run on it; every finding is printed compiler-style, in file order.

use super::files::read_inputs;
use super::{AnalyzeArgs, CliError};
use std::io::Write;
use std::process::ExitCode;
use trellis_api::load::read_str;
use trellis_api::{ConfigSet, Diagnostic, diagnostics};

/// Exit 1 when any finding is an error; warnings alone exit 0.
pub fn analyze(
    args: &AnalyzeArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let (inputs, mut findings) = read_inputs(&args.files.files);
    let mut resources = Vec::new();
    for input in &inputs {
        let (found, problems) = read_str(&input.text, Some(&input.name));
        findings.extend(problems);
        resources.extend(found);
    }
    let count = resources.len();
    // Resources defined twice are errors; the first definition still takes part in the checks.
    let set = match ConfigSet::from_resources(resources.clone()) {
        Ok(set) => set,
        Err(duplicates) => {
            findings.extend(duplicates);
            let mut set = ConfigSet::new();
            for r in resources {
                if set.get(&r.key()).is_none() {
                    set.insert(r);
                }
            }
            set
        }
    };
    findings.extend(set.warnings());
    diagnostics::sort(&mut findings);

    for f in &findings {
        writeln!(out, "{}", finding_line(f))?;
    }
    let errors = findings.iter().filter(|d| d.is_error()).count();
    let warnings = findings.len() - errors;
    if findings.is_empty() {
        if count == 0 && inputs.is_empty() {
            writeln!(err, "no input files found")?;
        } else if count == 0 {
            writeln!(err, "✔ no issues found (no resources in the input)")?;
        } else {
            writeln!(err, "✔ no issues found")?;
        }
    } else {
        let mut parts = Vec::new();
        if errors > 0 {
            parts.push(plural(errors, "error"));
        }
        if warnings > 0 {
            parts.push(plural(warnings, "warning"));
        }
        writeln!(err, "{}", parts.join(", "))?;
    }
    Ok(if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// `file:line:col: error: Kind ns/name: field: message`: the diagnostic's own rendering with the
/// severity always spelled out, as compilers print it.
pub fn finding_line(d: &Diagnostic) -> String {
    let mut location = String::new();
    if let Some(file) = &d.file {
        location.push_str(file);
    }
    if let Some(line) = d.line {
        if !location.is_empty() {
            location.push(':');
        }
        location.push_str(&line.to_string());
        if let Some(column) = d.column {
            location.push_str(&format!(":{column}"));
        }
    }
    let rest = Diagnostic {
        file: None,
        line: None,
        column: None,
        ..d.clone()
    };
    let severity = if d.is_error() { "error: " } else { "" };
    if location.is_empty() {
        format!("{severity}{rest}")
    } else {
        format!("{location}: {severity}{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_spell_out_the_severity() {
        let d = Diagnostic::error("bad")
            .with_file("a.yaml")
            .at(3, 5)
            .with_resource("VirtualService default/r")
            .with_field("spec.hosts");
        assert_eq!(
            finding_line(&d),
            "a.yaml:3:5: error: VirtualService default/r: spec.hosts: bad"
        );
        let w = Diagnostic::warning("odd").with_file("a.yaml");
        assert_eq!(finding_line(&w), "a.yaml: warning: odd");
        assert_eq!(finding_line(&Diagnostic::error("x")), "error: x");
    }
}
