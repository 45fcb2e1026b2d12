use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::*;

const GOOD: &str = r#"
[services.frontend]
image = "frontend"
replicas = 8
env = { BACKEND_URL = "http://{backend}:8080" }

[services.backend]
image = "backend"

[load_balancer]
kind = "haproxy"
service = "frontend"
routes = [{ path_prefix = "/api/", service = "backend" }]

[load]
rate = 50
duration = "30s"
warmup = "5s"
paths = [{ path = "/", weight = 9 }, { path = "/api/items", weight = 1 }]

[thresholds]
min_rate_ratio = 0.98
min_success = 0.98
max_p99_ms = 1000
"#;

fn recipes() -> RecipeImages {
    BTreeMap::from([
        ("backend".to_string(), true),
        ("frontend".to_string(), true),
        ("tool".to_string(), false),
    ])
}

fn errors(text: &str) -> String {
    parse(Path::new("stack.toml"), text, &recipes())
        .unwrap_err()
        .to_string()
}

#[test]
fn good_stack_orders_dependencies_first() {
    let s = parse(Path::new("stack.toml"), GOOD, &recipes()).unwrap();
    let names: Vec<_> = s.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["backend", "frontend"]);
    assert_eq!(s.load.warmup, Duration::from_secs(5));
    assert_eq!(s.load_balancer.balance, "leastconn");
    assert_eq!(s.restart.policy, "on-failure");
}

#[test]
fn semantic_errors_have_positions() {
    let text = GOOD
        .replace("replicas = 8", "replicas = 0")
        .replace("{backend}", "{backnd}")
        .replace("min_success = 0.98", "min_success = 98");
    let out = errors(&text);
    assert!(out.contains("replicas 0 is out of range"), "{out}");
    assert!(out.contains("stack.toml:4:12"), "{out}");
    assert!(out.contains("did you mean `{backend}`?"), "{out}");
    assert!(out.contains("min_success 98 is out of range"), "{out}");
}

#[test]
fn unknown_keys_and_recipes() {
    let out = errors(
        &GOOD
            .replace("rate = 50", "rat = 50")
            .replace("image = \"backend\"", "image = \"tool\""),
    );
    assert!(out.contains("unknown key `rat`"), "{out}");
    let out = errors(&GOOD.replace("image = \"backend\"", "image = \"tool\""));
    assert!(out.contains("recipe `tool` has no [image] table"), "{out}");
}

#[test]
fn cycles_are_refused() {
    let text = GOOD.replace(
        "image = \"backend\"",
        "image = \"backend\"\nenv = { X = \"{frontend}\" }",
    );
    assert!(errors(&text).contains("cycle"));
}

#[test]
fn references_and_expansion() {
    assert_eq!(references("http://{a}:{{x}}").unwrap(), ["a"]);
    assert!(references("{a").is_err());
    assert_eq!(
        expand("http://{a}:{{1}}", |n| format!("<{n}>")),
        "http://<a>:{1}"
    );
}

#[test]
fn overrides() {
    let mut s = parse(Path::new("stack.toml"), GOOD, &recipes()).unwrap();
    let o = Overrides {
        replicas: vec!["frontend=1".into()],
        env: vec!["backend:FAILURE_RATE=0.2".into()],
        ..Default::default()
    };
    s.apply(&o).unwrap();
    assert_eq!(s.service("frontend").unwrap().replicas, 1);
    assert_eq!(s.service("backend").unwrap().env["FAILURE_RATE"], "0.2");
    let bad = Overrides {
        replicas: vec!["frontnd=2".into()],
        ..Default::default()
    };
    let e = s.apply(&bad).unwrap_err();
    assert_eq!(crate::error::exit_code(&e), 2);
    assert!(e.to_string().contains("did you mean `frontend`"), "{e}");
}

#[test]
fn frontends_flag_is_named_in_its_errors() {
    let mut s = parse(Path::new("stack.toml"), GOOD, &recipes()).unwrap();
    let o = |n| Overrides {
        frontends: Some(n),
        ..Default::default()
    };
    s.apply(&o(3)).unwrap();
    assert_eq!(s.service("frontend").unwrap().replicas, 3);
    for n in [0, 65] {
        let e = s.apply(&o(n)).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert_eq!(
            e.to_string(),
            format!("--frontends {n}: N must be from 1 to 64")
        );
    }
    // An explicit --replicas for the same service wins.
    let both = Overrides {
        frontends: Some(2),
        replicas: vec!["frontend=5".into()],
        ..Default::default()
    };
    s.apply(&both).unwrap();
    assert_eq!(s.service("frontend").unwrap().replicas, 5);
}

#[test]
fn load_generator_limits_are_checked_with_positions() {
    let out = errors(
        &GOOD
            .replace("weight = 9", "weight = 20000")
            .replace("warmup = \"5s\"", "warmup = \"5s\"\ntimeout = \"11m\""),
    );
    assert!(out.contains("weight 20000 is out of range"), "{out}");
    assert!(out.contains("from 1 to 10000"), "{out}");
    assert!(out.contains("timeout `11m` is too long"), "{out}");
    assert!(out.contains("stack.toml:19:11"), "{out}");
    let out = errors(&GOOD.replace("duration = \"30s\"", "duration = \"3599s\""));
    assert!(out.contains("warmup plus duration is 3604s"), "{out}");
    assert!(out.contains("stack.toml:17:"), "{out}");
    let out = errors(&GOOD.replace("duration = \"30s\"", "duration = \"200h\""));
    assert!(out.contains("too long"), "{out}");
}

#[test]
fn overrides_keep_the_run_within_the_limit() {
    let mut s = parse(Path::new("stack.toml"), GOOD, &recipes()).unwrap();
    let o = Overrides {
        duration: Some(Duration::from_secs(3598)),
        ..Default::default()
    };
    let e = s.apply(&o).unwrap_err();
    assert_eq!(crate::error::exit_code(&e), 2);
    assert!(e.to_string().contains("--duration"), "{e}");
}

/// `GOOD` with `line` added after the backend's `image`: its problems and the position
/// (`stack.toml:LINE:COL`) of the first `"` of `line`.
fn with_backend_line(line: &str) -> (String, String) {
    let text = GOOD.replacen(
        "image = \"backend\"",
        &format!("image = \"backend\"\n{line}"),
        1,
    );
    let n = text.lines().position(|l| l == line).unwrap();
    let at = format!("stack.toml:{}:{}", n + 1, line.find('"').unwrap() + 1);
    (errors(&text), at)
}

fn position(text: &str, needle: &str) -> String {
    let (n, l) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .unwrap();
    format!("stack.toml:{}:{}", n + 1, l.find(needle).unwrap() + 1)
}

/// No raw control character reaches a message (newlines only between its lines).
fn assert_printable(out: &str) {
    assert!(
        out.chars().all(|c| c == '\n' || !c.is_control()),
        "{}",
        out.escape_debug()
    );
}

/// (TOML basic-string text of a path, what the message must say). Each would have ended a
/// word, a line or a quote in haproxy.cfg, or a request line.
const HOSTILE_PATHS: &[(&str, &str)] = &[
    (
        r#"/a\"b"#,
        "it has `\"` at character 3, which cannot appear in an HTTP path",
    ),
    ("/a#b", "it has a `#` at character 3"),
    (r"/a\u0000b", "it has U+0000 at character 3"),
    (r"/a\nb", "it has U+000A at character 3"),
    (r"/a\rb", "it has U+000D at character 3"),
    (r"/a\tb", "it has U+0009 at character 3"),
    (r"/\u001b[31mred", "it has U+001B at character 2"),
    (r"/\u007f", "it has U+007F at character 2"),
    ("/a b", "it has a space at character 3"),
    (r"/a\\b", "it has `\\` at character 3"),
    ("/a<b>", "it has `<` at character 3"),
    ("/a`b", "it has ``` at character 3"),
    (
        "/a%zz",
        "`%` at character 3 that does not start a percent-escape",
    ),
    (
        "/a%2",
        "`%` at character 3 that does not start a percent-escape",
    ),
    ("api/", "it starts with `a`, not `/`"),
    ("", "it is empty"),
    ("/caf\u{e9}", "percent-encode it as `%C3%A9`"),
    (
        "/a?b c",
        "a space at character 5, which cannot appear in an HTTP query",
    ),
];

#[test]
fn hostile_health_paths_are_refused_at_their_position() {
    for (path, says) in HOSTILE_PATHS {
        let (out, at) = with_backend_line(&format!("health = \"{path}\""));
        assert!(out.contains(&at), "{path}: {out}");
        assert!(out.contains("invalid health path `"), "{path}: {out}");
        assert!(out.contains("(services.backend.health)"), "{path}: {out}");
        assert!(out.contains(says), "{path}: {out}");
        assert_printable(&out);
    }
}

#[test]
fn hostile_route_prefixes_and_load_paths_are_refused() {
    for (path, says) in HOSTILE_PATHS {
        // A prefix is refused at its `?` already: put a `/` there to reach the rest.
        let prefix = path.replace('?', "/");
        let text = GOOD.replace(
            "path_prefix = \"/api/\"",
            &format!("path_prefix = \"{prefix}\""),
        );
        let out = errors(&text);
        assert!(
            out.contains(&position(&text, &format!("\"{prefix}\""))),
            "{path}: {out}"
        );
        assert!(out.contains("invalid path prefix `"), "{out}");
        assert!(out.contains("(load_balancer.routes): it"), "{out}");
        assert!(
            out.contains(&says.replace("HTTP query", "HTTP path")),
            "{path}: {out}"
        );
        assert_printable(&out);

        let text = GOOD.replace("path = \"/api/items\"", &format!("path = \"{path}\""));
        let out = errors(&text);
        assert!(
            out.contains(&position(&text, &format!("\"{path}\""))),
            "{path}: {out}"
        );
        assert!(out.contains("(load.paths): it"), "{out}");
        assert!(out.contains(says), "{path}: {out}");
        assert_printable(&out);
    }
    // `path_beg` never sees a query, so a prefix with one could never match.
    let out = errors(&GOOD.replace("path_prefix = \"/api/\"", "path_prefix = \"/api?x\""));
    assert!(out.contains("a prefix with `?` never matches"), "{out}");
}

#[test]
fn awkward_but_valid_paths_are_kept_as_written() {
    let health = "/_h/'q'$HOME;a=(1)*+,!~@:%22?x=$PATH&y='2'/?z";
    let text = GOOD
        .replacen(
            "image = \"backend\"",
            &format!("image = \"backend\"\nhealth = \"{health}\""),
            1,
        )
        .replace("/api/\"", "/api$v1/'x'(y);z=1,2*+!~@:%20/\"")
        .replace("path = \"/api/items\"", "path = \"/api/items?a=1&b=/?c\"");
    let s = parse(Path::new("stack.toml"), &text, &recipes()).unwrap();
    assert_eq!(s.service("backend").unwrap().health, health);
    assert_eq!(
        s.load_balancer.routes[0].path_prefix,
        "/api$v1/'x'(y);z=1,2*+!~@:%20/"
    );
    assert_eq!(s.load.paths[1].path, "/api/items?a=1&b=/?c");
}

#[test]
fn hostile_environment_is_refused_at_its_position() {
    let cases = [
        (r#""A=B" = "x""#, "`A=B`", "it has `=` at character 2"),
        (r#""" = "x""#, "``", "it is empty"),
        (r#""1A" = "x""#, "`1A`", "it starts with a digit"),
        (r#""A B" = "x""#, "`A B`", "it has a space at character 2"),
        (r#""A\nB" = "x""#, r"`A\nB`", "it has U+000A at character 2"),
        (
            r#""A\u0000" = "x""#,
            r"`A\u{0}`",
            "it has U+0000 at character 2",
        ),
    ];
    for (entry, key, says) in cases {
        let (out, at) = with_backend_line(&format!("env = {{ {entry} }}"));
        assert!(out.contains(&at), "{entry}: {out}");
        assert!(
            out.contains(&format!(
                "invalid environment variable name {key} (services.backend.env): {says}"
            )),
            "{entry}: {out}"
        );
        assert_printable(&out);
    }
    let (out, at) = with_backend_line(r#"env = { X = "a\u0000b" }"#);
    assert!(out.contains(&at), "{out}");
    assert!(
        out.contains(
            "invalid value of `X` (services.backend.env): it has a NUL (U+0000) at character 2"
        ),
        "{out}"
    );
    // Newlines are fine in a container's environment (and reach no config file).
    let text = GOOD.replacen(
        "image = \"backend\"",
        "image = \"backend\"\nenv = { CERT = \"line 1\\nline 2\\r\\n\", _X1 = \"\" }",
        1,
    );
    let s = parse(Path::new("stack.toml"), &text, &recipes()).unwrap();
    assert_eq!(
        s.service("backend").unwrap().env["CERT"],
        "line 1\nline 2\r\n"
    );
}

#[test]
fn hostile_env_overrides_are_usage_errors() {
    let mut s = parse(Path::new("stack.toml"), GOOD, &recipes()).unwrap();
    for (arg, says) in [
        (
            "backend:A B=1",
            "invalid environment variable name `A B`: it has a space",
        ),
        ("backend:1X=1", "it starts with a digit"),
        ("backend:X\n=1", r"`X\n`: it has U+000A"),
        (
            "backend:X=a\0b",
            "the value has a NUL (U+0000) at character 2",
        ),
    ] {
        let o = Overrides {
            env: vec![arg.into()],
            ..Default::default()
        };
        let e = s.apply(&o).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(e.to_string().contains(says), "{arg:?}: {e}");
        assert_printable(&e.to_string());
    }
    // `=` in the value is the value's.
    let o = Overrides {
        env: vec!["backend:Q=a=b".into()],
        ..Default::default()
    };
    s.apply(&o).unwrap();
    assert_eq!(s.service("backend").unwrap().env["Q"], "a=b");
}

#[test]
fn service_names_fit_a_dns_label() {
    let longest = format!(
        "builder-smoke-{}-{}-{MAX_REPLICAS}",
        crate::docker::new_run_id(),
        "a".repeat(MAX_SERVICE_NAME)
    );
    assert_eq!(longest.len(), 63, "{longest}");
    let name = "a".repeat(MAX_SERVICE_NAME + 1);
    let out = errors(&GOOD.replace("[services.backend]", &format!("[services.{name}]")));
    assert!(
        out.contains(&format!("invalid service name `{name}`")),
        "{out}"
    );
    assert!(out.contains("at most 27"), "{out}");
    let out = errors(&GOOD.replace("[services.backend]", "[services.\"a\\u001b[2J\"]"));
    assert!(out.contains(r"invalid service name `a\u{1b}[2J`"), "{out}");
    assert_printable(&out);
}

#[test]
fn base_image_names_are_checked() {
    let out = errors(&GOOD.replace(
        "kind = \"haproxy\"",
        "kind = \"haproxy\"\nbase = \"../../etc/x\\n\"",
    ));
    assert!(
        out.contains(r"invalid base image name `../../etc/x\n` (load_balancer.base)"),
        "{out}"
    );
    assert_printable(&out);
}

#[test]
fn every_echoed_value_is_printable() {
    let text = GOOD
        .replace(
            "kind = \"haproxy\"",
            "kind = \"haproxy\"\nbalance = \"b\\u0007\"",
        )
        .replace("image = \"backend\"", "image = \"back\\rend\"")
        .replace("{backend}", "{back\\u001bend}")
        .replace("service = \"frontend\"", "service = \"front\\u0000\"")
        .replace("warmup = \"5s\"", "warmup = \"5\\u001bs\"");
    let out = errors(&text);
    assert!(out.contains(r"unknown balance algorithm `b\u{7}`"), "{out}");
    assert!(out.contains(r"no recipe `back\rend`"), "{out}");
    assert!(out.contains(r"unknown service `{back\u{1b}end}`"), "{out}");
    assert!(out.contains(r"`front\u{0}` is not a service"), "{out}");
    assert!(out.contains(r"invalid warmup `5\u{1b}s`"), "{out}");
    assert_printable(&out);
}

#[test]
fn a_stack_file_that_is_not_utf8_gets_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stack.toml");
    std::fs::write(&file, b"[services.backend]\nimage = \"back\xffend\"\n").unwrap();
    let out = load(&file, &recipes()).unwrap_err().to_string();
    assert!(out.contains("stack.toml:2:14"), "{out}");
    assert!(out.contains("byte 0xFF"), "{out}");
}

#[test]
fn canary_table_defaults_and_values() {
    let s = parse(Path::new("stack.toml"), GOOD, &recipes()).unwrap();
    assert!(s.canary.is_none() && s.baseline().is_none());
    let text = format!(
        "{GOOD}\n[canary]\nbaseline = \"dev\"\nweight = 30\nswitch_steps = [25, 100]\nstep_duration = \"2s\"\nalpha = 0.05\nmax_switch_failures = 3\n"
    );
    let s = parse(Path::new("stack.toml"), &text, &recipes()).unwrap();
    let c = s.canary.clone().unwrap();
    assert_eq!(s.baseline(), Some("dev"));
    assert_eq!(
        (
            c.weight,
            c.switch_steps.as_slice(),
            c.step_duration,
            c.alpha
        ),
        (30, &[25, 100][..], Duration::from_secs(2), 0.05)
    );
    assert_eq!(c.max_switch_failures, 3);
    assert_eq!(c.min_requests, CanarySpec::default().min_requests);
    // Two steps and the drained baseline, 2 s each.
    assert_eq!(c.switch_time(), Duration::from_secs(6));
}

#[test]
fn canary_errors_have_positions() {
    let text = format!(
        "{GOOD}\n[canary]\nbaseline = \"d/v\"\nweight = 100\nswitch_steps = [50, 20, 90]\nalpha = 2\nstep_duration = \"0s\"\nmin_requets = 5\n"
    );
    let out = errors(&text);
    // Syntax first: the unknown key, with a suggestion.
    assert!(out.contains("unknown key `min_requets`"), "{out}");
    assert!(out.contains("did you mean `min_requests`?"), "{out}");
    let text = text.replace("min_requets = 5\n", "");
    let out = errors(&text);
    let line = |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    assert!(
        out.contains(&format!("stack.toml:{}:12", line("baseline = "))),
        "{out}"
    );
    assert!(
        out.contains("`d/v` is not a valid environment name"),
        "{out}"
    );
    assert!(
        out.contains(&format!("stack.toml:{}:10", line("weight = "))),
        "{out}"
    );
    assert!(out.contains("canary.weight 100 is out of range"), "{out}");
    assert!(
        out.contains("canary.switch_steps: step 20 does not rise above the one before it"),
        "{out}"
    );
    assert!(out.contains("canary.switch_steps must end at 100"), "{out}");
    assert!(out.contains("canary.alpha 2 is out of range"), "{out}");
    assert!(out.contains("invalid canary.step_duration `0s`"), "{out}");
}

#[test]
fn canary_overrides() {
    let text = format!("{GOOD}\n[canary]\nbaseline = \"dev\"\n");
    let mut s = parse(Path::new("stack.toml"), &text, &recipes()).unwrap();
    s.apply(&Overrides {
        baseline: Some("staging".into()),
        candidate_env: vec!["backend:LATENCY=50ms".into()],
        baseline_env: vec!["frontend:X=1".into()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.baseline(), Some("staging"));
    assert_eq!(
        s.service("backend").unwrap().candidate_env["LATENCY"],
        "50ms"
    );
    assert!(!s.service("backend").unwrap().env.contains_key("LATENCY"));
    assert_eq!(s.service("frontend").unwrap().baseline_env["X"], "1");
    s.apply(&Overrides {
        no_canary: true,
        ..Default::default()
    })
    .unwrap();
    assert!(s.canary.is_none());
    // Without a baseline, --baseline-env has nowhere to go; flags are named in errors.
    let e = s
        .apply(&Overrides {
            baseline_env: vec!["backend:X=1".into()],
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(crate::error::exit_code(&e), 2);
    assert!(
        e.to_string()
            .contains("--baseline-env `backend:X=1`: there is no baseline"),
        "{e}"
    );
    let e = s
        .apply(&Overrides {
            candidate_env: vec!["backnd:X=1".into()],
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("--candidate-env: no service `backnd`"),
        "{e}"
    );
    assert!(e.to_string().contains("did you mean `backend`"), "{e}");
    let e = s
        .apply(&Overrides {
            baseline: Some("../x".into()),
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("--baseline: `../x` is not a valid environment name"),
        "{e}"
    );
    // --baseline alone makes a canary with the default tolerances.
    let mut s = parse(Path::new("stack.toml"), GOOD, &recipes()).unwrap();
    s.apply(&Overrides {
        baseline: Some("dev".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        s.canary,
        Some(CanarySpec {
            baseline: Some("dev".into()),
            ..CanarySpec::default()
        })
    );
}

fn parse_ok(text: &str) -> Stack {
    parse(Path::new("stack.toml"), text, &recipes()).unwrap()
}

#[test]
fn target_is_containers_or_swarm() {
    let stack = parse_ok(&format!(
        "target = \"swarm\"\nregistry = \"127.0.0.1:5000\"\n{GOOD}"
    ));
    assert_eq!(stack.target, DeployTarget::Swarm);
    assert_eq!(stack.registry.as_deref(), Some("127.0.0.1:5000"));
    assert_eq!(parse_ok(GOOD).target, DeployTarget::Containers);
    let out = errors(&format!("target = \"swarn\"\n{GOOD}"));
    assert!(out.contains("unknown target `swarn`"), "{out}");
    assert!(out.contains("use one of: containers, swarm"), "{out}");
}

#[test]
fn resource_limits_per_service() {
    let stack = parse_ok(&GOOD.replacen(
        "replicas = 8",
        "replicas = 8\ncpus = 0.5\nmemory = \"256M\"",
        1,
    ));
    let frontend = stack
        .services
        .iter()
        .find(|s| s.name == "frontend")
        .unwrap();
    assert_eq!(frontend.cpus, Some(0.5));
    assert_eq!(frontend.memory, Some(256 << 20));
    let backend = stack.services.iter().find(|s| s.name == "backend").unwrap();
    assert_eq!((backend.cpus, backend.memory), (None, None));
    let whole = parse_ok(&GOOD.replacen("replicas = 8", "cpus = 1\nmemory = 67108864", 1));
    assert_eq!(whole.services[1].cpus, Some(1.0));
    assert_eq!(whole.services[1].memory, Some(64 << 20));
}

#[test]
fn bad_resource_limits_have_positions_and_say_what_to_write() {
    for (line, message, help) in [
        (
            "cpus = 0",
            "invalid cpus 0 (services.backend.cpus)",
            "from 0.01 to 1024",
        ),
        (
            "cpus = -2.5",
            "invalid cpus -2.5 (services.backend.cpus)",
            "e.g. `cpus = 2` or `0.5`",
        ),
        (
            "memory = \"256Q\"",
            "invalid memory \"256Q\" (services.backend.memory)",
            "with a unit, e.g.",
        ),
        (
            "memory = \"1m\"",
            "invalid memory \"1m\" (services.backend.memory)",
            "at least 6m (Docker's minimum)",
        ),
        (
            "memory = 1.5",
            "invalid memory 1.5 (services.backend.memory)",
            "`\"256M\"`",
        ),
    ] {
        let text = GOOD.replacen(
            "image = \"backend\"",
            &format!("image = \"backend\"\n{line}"),
            1,
        );
        let out = errors(&text);
        let n = text.lines().position(|l| l == line).unwrap();
        let at = format!("stack.toml:{}:{}", n + 1, line.find("= ").unwrap() + 3);
        assert!(out.contains(&at), "{line}: {at} in {out}");
        assert!(out.contains(message), "{line}: {out}");
        assert!(out.contains(help), "{line}: {out}");
    }
    // A string where a number belongs is the parser's error, also with a position.
    let out = errors(&GOOD.replacen("replicas = 8", "cpus = \"half\"", 1));
    assert!(out.contains("stack.toml:4:8"), "{out}");
}
