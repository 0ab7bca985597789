//! The README's walk-through, run: every `$ curl` line of its `## Walk-through` section is sent
//! to freshly started `dtp` and `taskpilot` binaries (README ports 8080 and 8081 mapped to
//! theirs), and each answer must have exactly the fields the README shows, with the same
//! values, except for times, durations and worker ids, which must only be of the same kind. A
//! GET is asked again until it matches (the README's "a moment later"), for at most a minute.
//!
//! To rewrite the walk-through after an API change, run this test with
//! `README_WALKTHROUGH_PRINT=1 cargo test --test readme -- --nocapture`: it prints every command
//! with the answer it got, in the README's format.

use std::time::Duration;

use serde_json::Value;
use suite::System;

/// Fields whose values change from run to run: only their kind (null or not, type) is compared.
const VOLATILE: [&str; 6] = [
    "workerId",
    "durationMs",
    "queueLatencyMs",
    "processingLatencyMs",
    "endToEndLatencyMs",
    "oldestPendingAgeMs",
];

/// How long a GET may take to reach the README's answer.
const PATIENCE: Duration = Duration::from_secs(60);

/// One `$ curl …` line of the walk-through and the answer printed under it.
#[derive(Debug)]
struct Step {
    command: String,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    answer: Option<Value>,
}

fn walk_through() -> Vec<Step> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("\n## Walk-through\n")
        .expect("README has a `## Walk-through` section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 3)];
    let mut steps = Vec::new();
    let mut in_block = false;
    let mut command: Option<String> = None;
    let mut answer = String::new();
    let mut finish = |command: &mut Option<String>, answer: &mut String| {
        if let Some(command) = command.take() {
            steps.push(parse_step(&command, answer));
        }
        answer.clear();
    };
    for line in section.lines() {
        if line.starts_with("```") {
            finish(&mut command, &mut answer);
            in_block = line.trim() == "```console";
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(text) = line.strip_prefix("$ ") {
            finish(&mut command, &mut answer);
            command = Some(text.to_owned());
        } else if let Some(open) = command.as_mut().filter(|c| c.ends_with('\\')) {
            open.pop();
            open.push_str(line.trim_start());
        } else if command.is_some() {
            answer.push_str(line);
            answer.push('\n');
        }
    }
    finish(&mut command, &mut answer);
    // Every command of the section was read: none sits in a block this parser skipped.
    let written = section.lines().filter(|l| l.starts_with("$ ")).count();
    assert_eq!(
        steps.len(),
        written,
        "the walk-through writes {written} commands and {} were read: are they all in \
         ```console blocks?",
        steps.len()
    );
    assert!(
        steps.len() >= 5,
        "the walk-through has only {} commands",
        steps.len()
    );
    steps
}

fn parse_step(command: &str, answer: &str) -> Step {
    let words = shell_words(command);
    assert_eq!(
        words.first().map(String::as_str),
        Some("curl"),
        "not a curl command: {command}"
    );
    let (mut method, mut url, mut body, mut headers) = (None, None, None, Vec::new());
    let mut rest = words[1..].iter();
    while let Some(word) = rest.next() {
        match word.as_str() {
            "-s" | "-sS" => {}
            "-X" => method = rest.next().cloned(),
            "-H" => {
                let header = rest.next().expect("-H takes a header");
                let (name, value) = header.split_once(':').expect("-H 'name: value'");
                headers.push((name.trim().to_lowercase(), value.trim().to_owned()));
            }
            "-d" | "--data" => body = rest.next().cloned(),
            _ if word.starts_with("-X") => method = Some(word[2..].to_owned()),
            _ if word.starts_with("localhost:") => url = Some(word.clone()),
            _ => panic!("the walk-through test does not know {word:?} in: {command}"),
        }
    }
    // What curl sends with -d unless told otherwise.
    if body.is_some() && !headers.iter().any(|(name, _)| name == "content-type") {
        headers.push((
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ));
    }
    let answer = answer.trim();
    Step {
        command: command.to_owned(),
        method: method.unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.to_owned()),
        url: url.unwrap_or_else(|| panic!("no localhost URL in: {command}")),
        headers,
        body,
        answer: (!answer.is_empty()).then(|| {
            serde_json::from_str(answer).unwrap_or_else(|e| {
                panic!("the answer to `{command}` is not JSON ({e}):\n{answer}")
            })
        }),
    }
}

/// Splits a shell command line into words: single and double quotes, a `#` comment.
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') if !in_word => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Where `expected` and `actual` differ, as paths; empty when they agree. `partial`: fields
/// of `actual` that `expected` does not show are no difference (while printing, so that a
/// README placeholder such as `{"status":"RUNNING"}` says what to wait for).
fn differences(path: &str, expected: &Value, actual: &Value, partial: bool, out: &mut Vec<String>) {
    let key = path.rsplit('.').next().unwrap_or(path);
    if VOLATILE.contains(&key) || is_time(expected) {
        let same_kind = match (expected, actual) {
            (Value::String(e), Value::String(a)) => {
                is_time(&Value::String(e.clone())) == is_time(&Value::String(a.clone()))
            }
            (e, a) => std::mem::discriminant(e) == std::mem::discriminant(a),
        };
        if !same_kind {
            out.push(format!("{path}: README {expected}, got {actual}"));
        }
        return;
    }
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                match a.get(k) {
                    Some(got) => differences(&format!("{path}.{k}"), v, got, partial, out),
                    None => out.push(format!("{path}.{k}: in the README, not in the answer")),
                }
            }
            for k in a.keys().filter(|k| !partial && !e.contains_key(*k)) {
                out.push(format!("{path}.{k}: in the answer, not in the README"));
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (e, a)) in e.iter().zip(a).enumerate() {
                differences(&format!("{path}[{i}]"), e, a, partial, out);
            }
        }
        (e, a) if e == a => {}
        (e, a) => out.push(format!("{path}: README {e}, got {a}")),
    }
}

fn is_time(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

/// `json` (compact, as the service sent it) in the README's format: broken after a comma
/// where the next field would take the line past 100 characters.
fn wrapped(compact: &str) -> String {
    let (mut out, mut line_length, mut in_string, mut escaped) = (String::new(), 0, false, false);
    for (i, c) in compact.char_indices() {
        out.push(c);
        line_length += 1;
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            ',' if !in_string => {
                let next = compact[i + 1..].find(',').unwrap_or(compact.len() - i - 1);
                if line_length + next > 100 {
                    out.push_str("\n ");
                    line_length = 1;
                }
            }
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walk_through_answers_what_it_shows() {
    let steps = walk_through();
    let system = System::start().await;
    let (dtp, taskpilot) = (system.dtp[0].url(), system.taskpilot.url());
    let printing = std::env::var_os("README_WALKTHROUGH_PRINT").is_some();
    let client = reqwest::Client::new();
    for step in &steps {
        let url = format!("http://{}", step.url)
            .replace("http://localhost:8080", &dtp)
            .replace("http://localhost:8081", &taskpilot);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let method = reqwest::Method::from_bytes(step.method.as_bytes()).expect("method");
            let mut request = client.request(method, &url);
            for (name, value) in &step.headers {
                request = request.header(name, value);
            }
            if let Some(body) = &step.body {
                request = request.body(body.clone());
            }
            let response = request.send().await.expect("the service answers");
            let text = response.text().await.expect("an answer");
            let actual: Option<Value> = (!text.is_empty()).then(|| {
                serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("`{}` answered no JSON ({e}): {text}", step.command))
            });
            let mut found = Vec::new();
            match (&step.answer, &actual) {
                (Some(expected), Some(actual)) => {
                    differences("$", expected, actual, printing, &mut found)
                }
                (None, None) => {}
                (expected, actual) => found.push(format!("README {expected:?}, got {actual:?}")),
            }
            let retry = step.method == "GET" && tokio::time::Instant::now() < deadline;
            if found.is_empty() || !retry {
                if printing {
                    println!("$ {}", step.command);
                    if !text.is_empty() {
                        println!("{}", wrapped(&text));
                    }
                } else {
                    assert!(
                        found.is_empty(),
                        "`{}` answered differently from the README:\n  {}\nthe answer: {text}",
                        step.command,
                        found.join("\n  ")
                    );
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[test]
fn shell_words_follow_quotes_and_comments() {
    assert_eq!(
        shell_words(r#"curl -s -XPOST localhost:8080/x -d '{"a": "b c"}'   # a comment"#),
        [
            "curl",
            "-s",
            "-XPOST",
            "localhost:8080/x",
            "-d",
            r#"{"a": "b c"}"#
        ]
    );
}

#[test]
fn a_changed_field_and_a_missing_one_are_differences_and_a_later_time_is_not() {
    let readme = serde_json::json!({"id": 1, "status": "PENDING", "createdAt": "2026-01-01T00:00:00Z", "workerId": null});
    let same = serde_json::json!({"id": 1, "status": "PENDING", "createdAt": "2026-12-06T10:00:00.123Z", "workerId": null});
    let mut found = Vec::new();
    differences("$", &readme, &same, false, &mut found);
    assert!(found.is_empty(), "{found:?}");
    let other = serde_json::json!({"id": 1, "status": "RUNNING", "workerId": "w", "extra": 1});
    differences("$", &readme, &other, false, &mut found);
    assert_eq!(found.len(), 4, "{found:?}");
}
