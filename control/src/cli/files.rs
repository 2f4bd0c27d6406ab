//! `-f` inputs: files, directories (the same selection as `trellis_api::load_path`: recursive,
//! `*.yaml`, `*.yml`, `*.json`, sorted, hidden entries skipped) and `-` for stdin.

use std::io::Read;
use std::path::{Path, PathBuf};
use trellis_api::{ConfigSet, Diagnostic, Resource, load_str};

/// Name used for stdin in messages and in the `X-Trellis-File` header.
pub const STDIN_NAME: &str = "<stdin>";

/// Directory depth limit, against symlink loops (as `load_path`).
const MAX_DIR_DEPTH: usize = 32;

/// One input file's text, named as the user typed it (directory entries joined to the typed path).
#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    pub text: String,
}

/// Reads every `-f` argument in order. Unreadable inputs are reported as diagnostics naming the
/// file, after which the readable ones are still returned.
pub fn read_inputs(args: &[String]) -> (Vec<Input>, Vec<Diagnostic>) {
    let mut inputs = Vec::new();
    let mut problems = Vec::new();
    let mut stdin_used = false;
    for arg in args {
        if arg == "-" {
            if stdin_used {
                problems.push(Diagnostic::error("stdin (`-`) can be read only once"));
                continue;
            }
            stdin_used = true;
            let mut bytes = Vec::new();
            match std::io::stdin().read_to_end(&mut bytes) {
                Ok(_) => push_text(&mut inputs, &mut problems, STDIN_NAME.to_string(), bytes),
                Err(e) => problems
                    .push(Diagnostic::error(format!("cannot read: {e}")).with_file(STDIN_NAME)),
            }
            continue;
        }
        let path = Path::new(arg);
        if !path.exists() {
            problems.push(Diagnostic::error("no such file or directory").with_file(arg.as_str()));
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            collect_files(path, &mut files, &mut problems, 0);
            files.sort();
        } else {
            files.push(path.to_path_buf());
        }
        for file in files {
            let name = file.display().to_string();
            match std::fs::read(&file) {
                Ok(bytes) => push_text(&mut inputs, &mut problems, name, bytes),
                Err(e) => {
                    problems.push(Diagnostic::error(format!("cannot read: {e}")).with_file(name))
                }
            }
        }
    }
    (inputs, problems)
}

fn push_text(
    inputs: &mut Vec<Input>,
    problems: &mut Vec<Diagnostic>,
    name: String,
    bytes: Vec<u8>,
) {
    match String::from_utf8(bytes) {
        Ok(text) => inputs.push(Input { name, text }),
        Err(_) => problems.push(Diagnostic::error("file is not valid UTF-8").with_file(name)),
    }
}

fn collect_files(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    problems: &mut Vec<Diagnostic>,
    depth: usize,
) {
    if depth > MAX_DIR_DEPTH {
        problems.push(
            Diagnostic::error(format!(
                "directories nested deeper than {MAX_DIR_DEPTH} levels"
            ))
            .with_file(dir.display().to_string()),
        );
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(
                Diagnostic::error(format!("cannot read directory: {e}"))
                    .with_file(dir.display().to_string()),
            );
            return;
        }
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, files, problems, depth + 1);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            files.push(path);
        }
    }
}

/// Reads and validates every input for a write (apply, delete -f): all-or-nothing, with every
/// problem of every file, so nothing is sent while any file is wrong. A resource defined twice in
/// one file is an error, as the server would reject it.
pub fn load_inputs(args: &[String]) -> Result<Vec<(Input, Vec<Resource>)>, Vec<Diagnostic>> {
    let (inputs, mut problems) = read_inputs(args);
    let mut loaded = Vec::new();
    for input in inputs {
        match load_str(&input.text, &input.name) {
            Ok(resources) => {
                if let Err(dups) = ConfigSet::from_resources(resources.clone()) {
                    problems.extend(dups);
                }
                loaded.push((input, resources));
            }
            Err(diagnostics) => {
                problems.extend(diagnostics.into_iter().filter(Diagnostic::is_error))
            }
        }
    }
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(problems)
    }
}
