//! The documentation stands on its own:
//! - `docs/reference.md` is exactly what `twilio-operator crd --docs` prints (regenerate with
//!   `cargo run -- crd --docs > docs/reference.md`), and it names every field of every CRD;
//! - every relative link in README.md, docs/*.md and charts/**/README.md leads to a file or
//!   directory of this repository, and every `#anchor` into a Markdown file to one of its
//!   headings (GitHub's anchors); absolute http(s) links are not followed;
//! - nothing points outside the repository;
//! - every condition reason the code sets has its entry in `docs/troubleshooting.md`, and every
//!   alert of the chart's Prometheus rules a `runbook_url` to its own entry there.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use regex::Regex;
use twilio_operator::api::reference;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn committed_reference_matches_the_crds() {
    let committed = std::fs::read_to_string(repo().join("docs/reference.md")).unwrap_or_default();
    let generated = reference::generate();
    let first_difference = committed
        .lines()
        .zip(generated.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(committed.lines().count().min(generated.lines().count()));
    assert!(
        committed == generated,
        "docs/reference.md differs from the CRDs' schemas (first at line {}); regenerate it with `{}` and commit",
        first_difference + 1,
        reference::REGENERATE,
    );
}

/// Every property path below `schema`: `a.b` for properties, `a[]` for a list's items, `a.*` for
/// a map's values (the reference's own notation), walked here independently of the generator.
fn property_paths(schema: &serde_yaml::Value, prefix: &str, out: &mut Vec<String>) {
    if let Some(properties) = schema["properties"].as_mapping() {
        for (name, property) in properties {
            let name = name.as_str().expect("property names are strings");
            let path = if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") };
            out.push(path.clone());
            property_paths(property, &path, out);
        }
    }
    if schema["items"].is_mapping() {
        property_paths(&schema["items"], &format!("{prefix}[]"), out);
    }
    if schema["additionalProperties"].is_mapping() {
        property_paths(&schema["additionalProperties"], &format!("{prefix}.*"), out);
    }
}

#[test]
fn reference_names_every_field_of_every_crd() {
    let doc = reference::generate();
    let mut missing = Vec::new();
    let mut kinds = 0;
    for (file, yaml) in twilio_operator::api::crd_documents() {
        let crd: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
        let versions = crd["spec"]["versions"].as_sequence().unwrap();
        assert_eq!(versions.len(), 1, "{file}: one version (the reference titles kinds without it)");
        let mut paths = Vec::new();
        property_paths(&versions[0]["schema"]["openAPIV3Schema"], "", &mut paths);
        assert!(paths.len() > 2, "{file}: more than spec and status");

        // The kind's part of the document: from its heading to the next kind's.
        let start = doc.find(&format!("\n## {kind}\n")).unwrap_or_else(|| panic!("no section for {kind}"));
        let end = doc[start + 1..].find("\n## ").map_or(doc.len(), |i| start + 1 + i);
        let section = &doc[start..end];
        kinds += 1;
        for path in &paths {
            for shown in [format!("\n#### `{path}`\n"), format!("| [`{path}`](#")] {
                if !section.contains(&shown) {
                    missing.push(format!("{kind}: {shown:?}"));
                }
            }
        }
        // ... and no field the schema does not have.
        let headings: BTreeSet<&str> =
            section.lines().filter_map(|l| l.strip_prefix("#### `").and_then(|l| l.strip_suffix('`'))).collect();
        let expected: BTreeSet<&str> = paths.iter().map(String::as_str).collect();
        assert_eq!(headings, expected, "{kind}: the reference's fields are the schema's");
    }
    assert_eq!(kinds, 4);
    assert!(missing.is_empty(), "fields missing from the reference:\n{}", missing.join("\n"));
}

/// The files under `dir` (recursively, in name order) that `wanted` picks.
fn files_under(dir: &Path, wanted: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let mut out = Vec::new();
    for path in entries {
        if path.is_dir() {
            out.extend(files_under(&path, wanted));
        } else if wanted(&path) {
            out.push(path);
        }
    }
    out
}

/// The Markdown files whose links are checked.
fn markdown_files() -> Vec<PathBuf> {
    let root = repo();
    let mut files = vec![root.join("README.md"), root.join("CONTRIBUTING.md")];
    files.extend(files_under(&root.join("docs"), &|p| p.extension().is_some_and(|e| e == "md")));
    files.extend(files_under(&root.join("charts"), &|p| p.file_name().is_some_and(|n| n == "README.md")));
    files
}

/// `text` with fenced code blocks and inline code spans overwritten ('x', newlines kept), so that
/// what looks like a link or heading inside code is not taken for one and offsets still match.
fn without_code(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    // Fenced blocks: from a line opening with ``` or ~~~ to the line closing it.
    let mut fence: Option<(u8, usize)> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let marker = trimmed.bytes().next().filter(|b| *b == b'`' || *b == b'~');
        let run = marker.map_or(0, |m| trimmed.bytes().take_while(|b| *b == m).count());
        let blank = match fence {
            Some((m, n)) => {
                if marker == Some(m) && run >= n && trimmed[run..].trim().is_empty() {
                    fence = None;
                }
                true
            }
            None if run >= 3 => {
                fence = marker.map(|m| (m, run));
                true
            }
            None => false,
        };
        if blank {
            for b in &mut bytes[offset..offset + line.len()] {
                if *b != b'\n' {
                    *b = b'x';
                }
            }
        }
        offset += line.len();
    }
    // Code spans: a run of n backticks up to the next run of exactly n.
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let n = bytes[i..].iter().take_while(|b| **b == b'`').count();
        let mut j = i + n;
        let mut close = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let m = bytes[j..].iter().take_while(|b| **b == b'`').count();
                if m == n {
                    close = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                for b in &mut bytes[i..j + n] {
                    if *b != b'\n' {
                        *b = b'x';
                    }
                }
                i = j + n;
            }
            None => i += n,
        }
    }
    String::from_utf8(bytes).expect("only ASCII bytes were replaced")
}

/// GitHub's anchor for a heading (github-slugger): lowercase, spaces to '-', punctuation other
/// than '-' and '_' dropped; a repeated one gets "-1", "-2", ...
fn anchors(markdown: &str) -> BTreeSet<String> {
    let link = Regex::new(r"\[([^\]]*)\]\([^)]*\)").unwrap();
    let code = without_code(markdown);
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    for (line, masked) in markdown.lines().zip(code.lines()) {
        // A heading outside fenced code (inline code in its text is kept).
        let hashes = masked.bytes().take_while(|b| *b == b'#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let text = line[hashes..].trim().trim_end_matches('#').trim();
        let text = link.replace_all(text, "$1");
        let base = twilio_operator::api::reference::github_slug(&text);
        let mut slug = base.clone();
        while counts.contains_key(&slug) {
            let count = counts.entry(base.clone()).or_insert(0);
            *count += 1;
            slug = format!("{base}-{count}");
        }
        counts.insert(slug.clone(), 0);
        out.insert(slug);
    }
    out
}

/// The link targets in `markdown` with their line numbers: inline links and images
/// `[text](target "title")` and reference definitions `[id]: target`, outside code.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let inline =
        Regex::new(r#"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*)(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)"#).unwrap();
    let definition = Regex::new(r"(?m)^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)").unwrap();
    let text = without_code(markdown);
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    let mut out = Vec::new();
    for re in [&inline, &definition] {
        for captures in re.captures_iter(&text) {
            let target = captures.get(1).unwrap();
            let value = target.as_str().trim_start_matches('<').trim_end_matches('>').to_string();
            out.push((line_of(target.start()), value));
        }
    }
    out.sort();
    out
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why `target`, linked from `file`, does not resolve, if it does not.
fn broken(root: &Path, file: &Path, target: &str, cache: &mut HashMap<PathBuf, BTreeSet<String>>) -> Option<String> {
    if target.is_empty() {
        return Some("empty link".into());
    }
    let lower = target.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:") {
        return None;
    }
    let (path, fragment) = match target.split_once('#') {
        Some((path, fragment)) => (path, Some(fragment)),
        None => (target, None),
    };
    let resolved = if path.is_empty() {
        file.to_path_buf()
    } else {
        let path = percent_decoded(path.split('?').next().unwrap_or_default());
        let joined = match path.strip_prefix('/') {
            Some(from_root) => root.join(from_root),
            None => file.parent().unwrap().join(path),
        };
        // Lexically, so that a path through the parent of the repository is refused even when it
        // leads back in.
        let mut normal = PathBuf::new();
        for component in joined.components() {
            match component {
                Component::ParentDir => {
                    if !normal.pop() {
                        return Some("leaves the filesystem root".into());
                    }
                }
                Component::CurDir => {}
                other => normal.push(other),
            }
        }
        let Ok(inside) = normal.strip_prefix(root) else {
            return Some("points outside the repository".into());
        };
        if let Some(Component::Normal(first)) = inside.components().next()
            && (first == "target" || first == ".git")
        {
            return Some("points into build output or git's own files".into());
        }
        if !normal.exists() {
            return Some("no such file or directory".into());
        }
        normal
    };
    let fragment = fragment.filter(|f| !f.is_empty())?;
    if resolved.extension().is_none_or(|e| e != "md") {
        return None;
    }
    let headings = cache.entry(resolved.clone()).or_insert_with(|| anchors(&read(&resolved)));
    if headings.contains(&percent_decoded(fragment)) {
        None
    } else {
        let shown = resolved.strip_prefix(root).unwrap_or(&resolved).display().to_string();
        Some(format!("no heading with anchor #{fragment} in {shown}"))
    }
}

#[test]
fn every_relative_link_resolves_inside_the_repository() {
    let root = repo();
    let mut cache = HashMap::new();
    let mut broken_links = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let shown = file.strip_prefix(&root).unwrap().display().to_string();
        for (line, target) in links(&read(&file)) {
            checked += 1;
            if let Some(why) = broken(&root, &file, &target, &mut cache) {
                broken_links.push(format!("{shown}:{line}: ({target}): {why}"));
            }
        }
    }
    assert!(checked > 50, "only {checked} links found: is the link parser broken?");
    assert!(broken_links.is_empty(), "{} broken links:\n{}", broken_links.len(), broken_links.join("\n"));
}

#[test]
fn the_readme_and_the_docs_index_lead_to_every_document() {
    let root = repo();
    let targets = |file: &str| -> BTreeSet<String> {
        links(&read(&root.join(file))).into_iter().map(|(_, t)| t.split('#').next().unwrap().to_string()).collect()
    };
    let readme = targets("README.md");
    for doc in ["docs/getting-started.md", "docs/troubleshooting.md", "docs/reference.md", "docs/README.md"] {
        assert!(readme.contains(doc), "README.md links to {doc}");
    }
    // The index leads to every document of docs/.
    let index = targets("docs/README.md");
    for file in markdown_files() {
        let Ok(doc) = file.strip_prefix(root.join("docs")) else { continue };
        let doc = doc.display().to_string();
        if doc != "README.md" {
            assert!(index.contains(&doc), "docs/README.md links to {doc}");
        }
    }
}

#[test]
fn no_document_or_source_file_points_outside_the_repository() {
    let root = repo();
    let mut files = markdown_files();
    files.extend(files_under(&root.join("src"), &|p| p.extension().is_some_and(|e| e == "rs")));
    // Spelled apart so that a plain grep for these paths does not find this test itself.
    let outside = [concat!("../", "shared"), concat!("shared", "/design"), concat!("shared", "/twilio-oai")];
    let mut found = Vec::new();
    for file in files {
        for (n, line) in read(&file).lines().enumerate() {
            if outside.iter().any(|o| line.contains(o)) {
                found.push(format!("{}:{}: {line}", file.strip_prefix(&root).unwrap().display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "references outside the repository:\n{}", found.join("\n"));
}

#[test]
fn the_link_checker_finds_what_it_should() {
    let markdown = "# Title\n\n## Two words, here\n\n## Two words, here\n\nSee [a](#two-words-here) and\n\
                    [b](#two-words-here-1), ![img](x.png \"t\"), `[not](a link)`,\n\
                    ```\n[nor](this)\n# Nor a heading\n```\n[ref]: other.md\n";
    assert_eq!(
        links(markdown),
        vec![
            (7, "#two-words-here".to_string()),
            (8, "#two-words-here-1".to_string()),
            (8, "x.png".to_string()),
            (13, "other.md".to_string()),
        ]
    );
    let expected: BTreeSet<String> =
        ["title", "two-words-here", "two-words-here-1"].into_iter().map(String::from).collect();
    assert_eq!(anchors(markdown), expected);
    let root = repo();
    let readme = root.join("README.md");
    let mut cache = HashMap::new();
    assert!(broken(&root, &readme, "docs/promises.md", &mut cache).is_none());
    assert!(broken(&root, &readme, "docs/nothing-here.md", &mut cache).is_some());
    assert!(broken(&root, &readme, "../outside", &mut cache).is_some());
    assert!(broken(&root, &readme, "docs/promises.md#no-such-heading", &mut cache).is_some());
    assert!(broken(&root, &readme, "https://example.com/anything", &mut cache).is_none());
}

/// Paths of the repository named in inline code (`src/keys/plan.rs`, `hack/test.sh`): a layout
/// table or a pointer into the code that outlived a move would send a reader nowhere.
#[test]
fn every_repository_path_named_in_code_exists() {
    let root = repo();
    let path = regex::Regex::new(
        r"`((?:src|crates|tests|hack|docs|charts|crds|examples|third_party)/[A-Za-z0-9_./-]*[A-Za-z0-9_/])`",
    )
    .unwrap();
    let mut missing = Vec::new();
    for file in markdown_files() {
        if file.ends_with("docs/reference.md") {
            continue; // generated; its links are checked above
        }
        for (number, line) in read(&file).lines().enumerate() {
            for found in path.captures_iter(line) {
                let named = &found[1];
                if named.contains('*') || named.contains("...") || root.join(named).exists() {
                    continue;
                }
                missing.push(format!("{}:{}: `{named}`", file.strip_prefix(&root).unwrap().display(), number + 1));
            }
        }
    }
    assert!(missing.is_empty(), "paths named in the docs that do not exist:\n{}", missing.join("\n"));
}

/// The condition reasons the operator sets, read from its source (src/ and the API crate): the
/// `reason` of a `Health` (what Ready, Reconciling and Stalled say), `stall(label, "Reason")`
/// (src/error.rs: an error's reason), and `set_true(conditions, TYPE, "Reason", ...)` (the
/// conditions present only while True).
fn reasons_in_code() -> BTreeSet<String> {
    let patterns = [
        r#"Health::(?:Ready|Progressing|Stalled|Inactive)\s*\{\s*reason:\s*"([A-Za-z]+)""#,
        r#"\bstall\(\s*[^,()]+,\s*"([A-Za-z]+)"\s*\)"#,
        r#"\bset_true\(\s*[^,()]+,\s*[^,()]+,\s*"([A-Za-z]+)""#,
    ]
    .map(|p| Regex::new(p).unwrap());
    let rust = |p: &Path| p.extension().is_some_and(|e| e == "rs");
    let mut files = files_under(&repo().join("src"), &rust);
    files.extend(files_under(&repo().join("crates/api/src"), &rust));
    let mut out = BTreeSet::new();
    for file in files {
        let text = read(&file);
        for pattern in &patterns {
            out.extend(pattern.captures_iter(&text).map(|c| c[1].to_string()));
        }
    }
    out
}

/// The reasons `docs/troubleshooting.md` has an entry for: its headings "### `Reason`".
fn troubleshooting_entries(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix("### `").and_then(|l| l.strip_suffix('`')))
        .map(String::from)
        .collect()
}

#[test]
fn every_condition_reason_has_a_troubleshooting_entry() {
    let root = repo();
    let code = reasons_in_code();
    // The reader of the code must see what it should, or the checks below prove nothing.
    for known in ["KeyReady", "Retrying", "TwilioAuthFailed", "InvalidSpec", "SubaccountLimit", "RestartFailed"] {
        assert!(code.contains(known), "the source reader misses {known}: found only {code:?}");
    }
    // behaviour.md's table of reasons: each one the code sets (else the reader misses a pattern),
    // and each reason of the code is named there.
    let behaviour = read(&root.join("docs/behaviour.md"));
    let section = &behaviour[behaviour.find("\n## Conditions\n").expect("behaviour.md has ## Conditions")..];
    let row = Regex::new(r"(?m)^\| `([A-Za-z]+)` \|").unwrap();
    let table: BTreeSet<String> = row.captures_iter(section).map(|c| c[1].to_string()).collect();
    assert!(table.len() > 15, "behaviour.md's reasons table: only {table:?}");
    let unset: Vec<_> = table.difference(&code).collect();
    assert!(unset.is_empty(), "reasons in behaviour.md's table that the source reader did not find: {unset:?}");
    let unexplained: Vec<_> = code.iter().filter(|r| !behaviour.contains(&format!("`{r}`"))).collect();
    assert!(unexplained.is_empty(), "reasons the code sets that docs/behaviour.md never names: {unexplained:?}");

    let entries = troubleshooting_entries(&read(&root.join("docs/troubleshooting.md")));
    let missing: Vec<_> = code.difference(&entries).collect();
    assert!(
        missing.is_empty(),
        "condition reasons without an entry (a heading \"### `Reason`\") in docs/troubleshooting.md: {missing:?}"
    );
    let stale: Vec<_> = entries.difference(&code).collect();
    assert!(stale.is_empty(), "docs/troubleshooting.md has entries for reasons the code never sets: {stale:?}");
}

#[test]
fn every_alert_has_a_runbook_url_to_its_troubleshooting_entry() {
    let root = repo();
    let chart: serde_yaml::Value =
        serde_yaml::from_str(&read(&root.join("charts/twilio-operator/Chart.yaml"))).unwrap();
    let home = chart["home"].as_str().expect("Chart.yaml has home");
    let doc = read(&root.join("docs/troubleshooting.md"));
    let headings: BTreeSet<&str> = doc.lines().filter_map(|l| l.strip_prefix("### ")).collect();
    let slugs = anchors(&doc);
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&read(&root.join("charts/twilio-operator/files/prometheus-rules.yaml"))).unwrap();
    let mut problems = Vec::new();
    let mut alerts = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let Some(alert) = rule["alert"].as_str() else { continue };
            alerts += 1;
            let slug = reference::github_slug(alert);
            let expected = format!("{home}/blob/main/docs/troubleshooting.md#{slug}");
            match rule["annotations"]["runbook_url"].as_str() {
                Some(url) if url == expected => {}
                Some(url) => problems.push(format!("{alert}: runbook_url is {url}, not {expected}")),
                None => problems.push(format!("{alert}: no runbook_url annotation (expected {expected})")),
            }
            if !headings.contains(alert) || !slugs.contains(&slug) {
                problems.push(format!("{alert}: no entry \"### {alert}\" in docs/troubleshooting.md"));
            }
        }
    }
    assert!(alerts >= 10, "only {alerts} alerts read from the rules");
    assert!(problems.is_empty(), "alerts without their runbook:\n{}", problems.join("\n"));
}
