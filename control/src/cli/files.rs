//! `-f` inputs: files, directories (the same selection as `trellis_api::load_path`: recursive,
//! `*.yaml`, `*.yml`, `*.json`, sorted, hidden entries skipped) and `-` for stdin.

use std::io::Read;
use std::path::Path;
use trellis_api::{ConfigSet, Diagnostic, Resource, load_str};

/// Name used for stdin in messages and in the `X-Trellis-File` header.
pub const STDIN_NAME: &str = "<stdin>";

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
                Ok(_) => match String::from_utf8(bytes) {
                    Ok(text) => inputs.push(Input {
                        name: STDIN_NAME.to_string(),
                        text,
                    }),
                    Err(_) => problems
                        .push(Diagnostic::error("stdin is not valid UTF-8").with_file(STDIN_NAME)),
                },
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
        let (texts, unreadable) = trellis_api::load::read_config_files(path);
        problems.extend(unreadable);
        inputs.extend(texts.into_iter().map(|(name, text)| Input { name, text }));
    }
    (inputs, problems)
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
