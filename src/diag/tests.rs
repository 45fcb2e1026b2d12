use super::*;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct T {
    name: String,
    version: Option<String>,
}

#[test]
fn unknown_key_has_position_and_suggestion() {
    let text = "name = \"a\"\nverison = \"1\"\n";
    let err = parse_toml::<T>(Path::new("r.toml"), text).unwrap_err();
    let d = &err.items()[0];
    assert_eq!((d.line, d.col), (2, 1));
    let out = err.to_string();
    assert!(out.contains("unknown key `verison`"), "{out}");
    assert!(out.contains("did you mean `version`?"), "{out}");
    assert!(out.contains("r.toml:2:1"), "{out}");
}

#[test]
fn every_unknown_key_is_reported() {
    let text = "nmae = \"a\"\nverison = \"1\"\nname = \"b\"\n";
    let err = parse_toml::<T>(Path::new("r.toml"), text).unwrap_err();
    let lines: Vec<_> = err.items().iter().map(|d| d.line).collect();
    assert_eq!(lines, vec![1, 2], "{err}");
}

#[test]
fn hidden_characters_are_escaped_and_the_caret_follows() {
    assert_eq!(escape_controls("plain /etc/x"), "plain /etc/x");
    assert_eq!(
        escape_controls("a\u{1b}[31mb\u{9b}c\u{202e}d\ne"),
        "a\\u{1b}[31mb\\u{9b}c\\u{202e}d\\ne"
    );
    let text = "to = \"\u{1b}x\"\n";
    let at = text.find('x').unwrap();
    let d = Diagnostic::at(Path::new("r\u{7}.toml"), text, at..at + 1, "bad `\u{1b}x`")
        .label("here\u{0}")
        .help("fix\r");
    let out = d.to_string();
    assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
    assert!(out.contains("error: bad `\\u{1b}x`"), "{out}");
    assert!(out.contains("--> r\\u{7}.toml:1:8"), "{out}");
    // `\u{1b}` takes 6 columns on screen: the caret stays under `x`.
    assert!(
        out.contains("1 | to = \"\\u{1b}x\"\n  |             ^ here\\u{0}"),
        "{out}"
    );
    assert!(out.contains("help: fix\\r"), "{out}");
}

#[test]
fn line_index_agrees_with_counting() {
    let text = "a\nbc\r\n\nd";
    let lines = LineIndex::new(text);
    for offset in 0..=text.len() {
        let line = text[..offset].matches('\n').count() + 1;
        let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
        assert_eq!(lines.line_of(offset), (line, start), "offset {offset}");
    }
}

#[test]
fn invalid_utf8_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.toml");
    std::fs::write(&file, b"a = 1\nb = \"\xc3\x28\"\n").unwrap();
    let err = read_text(&file, "recipe").unwrap_err();
    let d = &err.items()[0];
    assert_eq!((d.line, d.col), (2, 6));
    assert!(d.message.contains("byte 0xC3"), "{}", d.message);
}

#[test]
fn syntax_errors_are_all_reported() {
    let text = "name = \n[x\n";
    let err = parse_toml::<T>(Path::new("r.toml"), text).unwrap_err();
    assert!(!err.is_empty());
    assert!(err.items()[0].line >= 1);
}

#[test]
fn the_collector_reports_every_problem_with_a_suggestion() {
    #[derive(Debug, serde::Deserialize)]
    struct K {
        kind: toml::Spanned<String>,
        mode: toml::Spanned<String>,
    }
    let text = "kind = \"haproxi\"\nmode = \"fast\"\n";
    let file = Path::new("stack.toml");
    let raw: K = parse_toml(file, text).unwrap();
    let mut out = Collector::new(file, text);
    assert!(!out.one_of(&raw.kind, &["haproxy"], "load balancer kind"));
    out.err_help(raw.mode.span(), "bad mode", "write `slow`");
    assert_eq!(out.count(), 2);
    let err = out.finish(()).unwrap_err();
    let at: Vec<_> = err.items().iter().map(|d| (d.line, d.col)).collect();
    assert_eq!(at, [(1, 8), (2, 8)]);
    let shown = err.to_string();
    assert!(
        shown.contains("error: unknown load balancer kind `haproxi`"),
        "{shown}"
    );
    assert!(shown.contains("did you mean `haproxy`?"), "{shown}");
    assert!(shown.contains("= help: use one of: haproxy"), "{shown}");
    assert!(shown.contains("stack.toml:2:8"), "{shown}");
    assert!(
        shown.ends_with("error: 2 problems found in 1 file"),
        "{shown}"
    );
}
