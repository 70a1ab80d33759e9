//! A tidy check for the code the simulator runs. tokio's `select!` (without `biased;`) and its
//! `watch` channel draw from a generator seeded by a per-process counter that madsim does not
//! control, so with either a simulator run would depend on the runs before it in the same
//! process (docs/simulation.md, "Determinism"). Clippy cannot see inside a macro call, so this
//! reads the sources.

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("server/src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("source is UTF-8");
            out.push((path.display().to_string(), text));
        }
    }
}

/// Lines of `text` that open a `select!` whose first token is not `biased;`.
fn unbiased_selects(text: &str) -> Vec<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (number, line) in lines.iter().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        if code.contains("select! {") {
            let next = lines.get(number + 1).map(|l| l.trim()).unwrap_or("");
            if next != "biased;" {
                found.push(number + 1);
            }
        }
    }
    found
}

#[test]
fn server_selects_are_biased_and_use_no_watch_channel() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    assert!(files.len() > 3, "found the server's sources");
    let mut problems = Vec::new();
    for (path, text) in &files {
        // The signal handler in main.rs never runs under the simulator.
        if path.ends_with("main.rs") {
            continue;
        }
        for line in unbiased_selects(text) {
            problems.push(format!("{path}:{line}: select! without `biased;`"));
        }
        for (number, line) in text.lines().enumerate() {
            if line.split("//").next().unwrap_or("").contains("watch::") {
                problems.push(format!("{path}:{}: tokio watch channel", number + 1));
            }
        }
    }
    assert!(problems.is_empty(), "non-deterministic under madsim:\n{}", problems.join("\n"));
}

#[test]
fn the_check_sees_an_unbiased_select() {
    let text = "loop {\n    tokio::select! {\n        a = x => {}\n    }\n}\n";
    assert_eq!(unbiased_selects(text), vec![2]);
    let fixed = "tokio::select! {\n    biased;\n    a = x => {}\n}\n";
    assert!(unbiased_selects(fixed).is_empty());
}
