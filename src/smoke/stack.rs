//! `recipes/stack.toml`: the smoke deployment (services, load balancer, load, thresholds,
//! restart policy). Parsed with spans and `deny_unknown_fields`, then validated like a recipe:
//! every problem is a diagnostic with file:line:col (exit code 2). Command-line overrides
//! ([`Overrides`]) are applied to the validated [`Stack`] afterwards and are usage errors.
//!
//! Stack text reaches HAProxy's configuration (paths, names), the containers' environment,
//! names and DNS aliases, and the load generator's request lines, so every such value is
//! checked here, before anything is deployed: HTTP paths are origin-form request targets,
//! environment keys are portable names, service names fit a DNS label. Messages echo user
//! text with control characters escaped ([`shown`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use crate::error::usage;
use crate::recipe::diag::{self, did_you_mean, Diagnostic};
use crate::recipe::Diagnostics;

type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStack {
    services: S<BTreeMap<String, S<RawService>>>,
    load_balancer: S<RawLb>,
    load: S<RawLoad>,
    thresholds: S<RawThresholds>,
    #[serde(default)]
    restart: Option<S<RawRestart>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    image: S<String>,
    #[serde(default)]
    replicas: Option<S<i64>>,
    #[serde(default)]
    port: Option<S<i64>>,
    #[serde(default)]
    health: Option<S<String>>,
    #[serde(default)]
    env: BTreeMap<S<String>, S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path_prefix: S<String>,
    service: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLb {
    kind: S<String>,
    #[serde(default)]
    base: Option<S<String>>,
    service: S<String>,
    #[serde(default)]
    routes: Vec<S<RawRoute>>,
    #[serde(default)]
    balance: Option<S<String>>,
    #[serde(default)]
    check_interval: Option<S<String>>,
    #[serde(default)]
    rise: Option<S<i64>>,
    #[serde(default)]
    fall: Option<S<i64>>,
    #[serde(default)]
    retries: Option<S<i64>>,
    #[serde(default)]
    redispatch: Option<bool>,
    #[serde(default)]
    retry_on: Option<S<Vec<String>>>,
    #[serde(default)]
    timeout_connect: Option<S<String>>,
    #[serde(default)]
    timeout_client: Option<S<String>>,
    #[serde(default)]
    timeout_server: Option<S<String>>,
    #[serde(default)]
    timeout_check: Option<S<String>>,
    #[serde(default)]
    ready_timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPath {
    path: S<String>,
    #[serde(default)]
    weight: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    rate: S<f64>,
    duration: S<String>,
    #[serde(default)]
    warmup: Option<S<String>>,
    #[serde(default)]
    timeout: Option<S<String>>,
    paths: S<Vec<S<RawPath>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThresholds {
    min_rate_ratio: S<f64>,
    min_success: S<f64>,
    max_p99_ms: S<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRestart {
    #[serde(default)]
    policy: Option<S<String>>,
    #[serde(default)]
    max_retries: Option<S<i64>>,
    #[serde(default)]
    unhealthy_grace: Option<S<String>>,
    #[serde(default)]
    builder_max: Option<S<i64>>,
}

fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// One service of the deployment: `replicas` containers of the image made by recipe `image`.
#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub name: String,
    /// The recipe (package name) whose `[image]` is run.
    pub image: String,
    pub replicas: u32,
    pub port: u16,
    /// Health check path (`GET <health>` must answer 200).
    pub health: String,
    /// Environment; `{svc}` in a value is replaced by the DNS name of service `svc`.
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub path_prefix: String,
    pub service: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadBalancer {
    pub kind: String,
    /// Base image definition the load balancer runs from (`base-images/<base>.toml`).
    pub base: String,
    /// The service that gets every request no route matches.
    pub service: String,
    pub routes: Vec<Route>,
    pub balance: String,
    #[serde(serialize_with = "secs")]
    pub check_interval: Duration,
    pub rise: u32,
    pub fall: u32,
    pub retries: u32,
    pub redispatch: bool,
    pub retry_on: Vec<String>,
    #[serde(serialize_with = "secs")]
    pub timeout_connect: Duration,
    #[serde(serialize_with = "secs")]
    pub timeout_client: Duration,
    #[serde(serialize_with = "secs")]
    pub timeout_server: Duration,
    #[serde(serialize_with = "secs")]
    pub timeout_check: Duration,
    /// How long every server may take to pass its health checks after start.
    #[serde(serialize_with = "secs")]
    pub ready_timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadPath {
    pub path: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadSpec {
    pub rate: f64,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    #[serde(serialize_with = "secs")]
    pub warmup: Duration,
    #[serde(serialize_with = "secs")]
    pub timeout: Duration,
    pub paths: Vec<LoadPath>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// Achieved rate / requested rate must be at least this.
    pub min_rate_ratio: f64,
    /// Success ratio must be at least this.
    pub min_success: f64,
    /// p99 latency must be at most this many milliseconds.
    pub max_p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestartSpec {
    /// Docker restart policy of the service containers.
    pub policy: String,
    pub max_retries: u32,
    /// A running container whose health check fails this long is restarted by builder.
    #[serde(serialize_with = "secs")]
    pub unhealthy_grace: Duration,
    /// Restarts builder itself makes per container, at most.
    pub builder_max: u32,
}

/// The validated stack.
#[derive(Debug, Clone, Serialize)]
pub struct Stack {
    pub file: PathBuf,
    /// In start order: a service comes after every service its environment refers to.
    pub services: Vec<Service>,
    pub load_balancer: LoadBalancer,
    pub load: LoadSpec,
    pub thresholds: Thresholds,
    pub restart: RestartSpec,
}

/// What the stack validation needs to know about the project's recipes: package name →
/// whether the recipe has an `[image]` table.
pub type RecipeImages = BTreeMap<String, bool>;

const BALANCE: &[&str] = &["leastconn", "roundrobin", "static-rr", "first", "random"];
const POLICIES: &[&str] = &["on-failure", "always", "unless-stopped", "no"];
const RETRY_ON: &[&str] = &[
    "none",
    "conn-failure",
    "empty-response",
    "junk-response",
    "response-timeout",
    "0rtt-rejected",
    "404",
    "408",
    "425",
    "500",
    "501",
    "502",
    "503",
    "504",
    "all-retryable-errors",
];

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    diags: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn err(&mut self, span: Range<usize>, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::at(self.file, self.text, span, msg));
        self.diags.last_mut().expect("just pushed")
    }

    fn err_help(&mut self, span: Range<usize>, msg: impl Into<String>, help: impl Into<String>) {
        self.err(span, msg).help = Some(help.into());
    }

    fn duration(&mut self, v: &Option<S<String>>, default: Duration, what: &str) -> Duration {
        match v {
            None => default,
            Some(s) => self.duration_of(s, what),
        }
    }

    fn duration_of(&mut self, s: &S<String>, what: &str) -> Duration {
        match crate::load::parse_duration(s.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.err_help(
                    s.span(),
                    format!("invalid {what} `{}`", shown(s.get_ref())),
                    "write a positive duration such as `30s`, `500ms` or `2m`",
                );
                Duration::from_secs(1)
            }
            Err(e) => {
                self.err_help(
                    s.span(),
                    format!("invalid {what} `{}`", shown(s.get_ref())),
                    shown(&e.to_string()),
                );
                Duration::from_secs(1)
            }
        }
    }

    /// Reports `d` (parsed from `v`) when it is longer than `max`, at `v`'s position.
    fn at_most(&mut self, v: &Option<S<String>>, d: Duration, max: Duration, what: &str) {
        if let Some(v) = v {
            if d > max {
                self.err_help(
                    v.span(),
                    format!("{what} `{}` is too long", shown(v.get_ref())),
                    format!(
                        "the load generator accepts at most {}s; write a shorter duration",
                        max.as_secs()
                    ),
                );
            }
        }
    }

    fn int(&mut self, v: &Option<S<i64>>, default: u32, min: i64, max: i64, what: &str) -> u32 {
        match v {
            None => default,
            Some(n) if (min..=max).contains(n.get_ref()) => *n.get_ref() as u32,
            Some(n) => {
                self.err_help(
                    n.span(),
                    format!("{what} {} is out of range", n.get_ref()),
                    format!("use a whole number from {min} to {max}"),
                );
                default
            }
        }
    }

    fn ratio(&mut self, v: &S<f64>, what: &str) -> f64 {
        let x = *v.get_ref();
        if !(0.0..=1.0).contains(&x) {
            self.err_help(
                v.span(),
                format!("{what} {x} is out of range"),
                "write a ratio from 0 to 1, e.g. 0.98 for 98%",
            );
        }
        x
    }

    /// Checks an HTTP path (`what`, at `field` of the stack) and returns it.
    fn http_path(&mut self, v: &S<String>, use_: PathUse, what: &str, field: &str) -> String {
        let p = v.get_ref();
        if let Some((problem, help)) = http_path_problem(p, use_) {
            self.err_help(
                v.span(),
                format!("invalid {what} `{}` ({field}): it {problem}", shown(p)),
                help,
            );
        }
        p.clone()
    }

    fn one_of(&mut self, v: &S<String>, allowed: &[&str], what: &str) {
        if !allowed.contains(&v.get_ref().as_str()) {
            let d = self.err(v.span(), format!("unknown {what} `{}`", shown(v.get_ref())));
            d.label = did_you_mean(v.get_ref(), allowed).map(|s| format!("did you mean `{s}`?"));
            d.help = Some(format!("use one of: {}", allowed.join(", ")));
        }
    }

    fn service_ref(&mut self, v: &S<String>, known: &[&str], what: &str) {
        if !known.contains(&v.get_ref().as_str()) {
            let d = self.err(
                v.span(),
                format!(
                    "{what} `{}` is not a service of this stack",
                    shown(v.get_ref())
                ),
            );
            d.label = did_you_mean(v.get_ref(), known).map(|s| format!("did you mean `{s}`?"));
            d.help = Some(format!("services: {}", known.join(", ")));
        }
    }
}

/// `{name}` references in an environment value; `{{` and `}}` are literal braces.
pub fn references(value: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("unclosed `{{` in `{}`", shown(value))),
                    }
                }
                out.push(name);
            }
            '}' => {
                return Err(format!(
                    "unmatched `}}` in `{}`; write `}}}}` for a literal brace",
                    shown(value)
                ))
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Replaces `{name}` with `lookup(name)`; `{{`/`}}` become single braces. Only called on
/// values whose references were validated.
pub fn expand(value: &str, lookup: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                out.push_str(&lookup(&name));
            }
            c => out.push(c),
        }
    }
    out
}

/// Longest service name. A replica's container is named
/// `builder-smoke-<run id>-<service>-<replica>` and HAProxy finds it by that name through
/// Docker's DNS, where one label holds at most 63 bytes (RFC 1035 §2.3.4): 63 minus
/// `builder-smoke-` (14), the run id (18, [`crate::docker::new_run_id`]), two `-` and the
/// replica number (2 digits, [`MAX_REPLICAS`]).
pub(crate) const MAX_SERVICE_NAME: usize = 63 - 14 - 18 - 2 - 2;

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_SERVICE_NAME
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `s` for a message: control characters escaped (`\n`, `\u{1b}`), the rest as written, so a
/// value can neither break a message's lines nor drive the terminal.
pub(crate) fn shown(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A character as a message names it: backticked when printable, its code point otherwise.
fn char_name(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        c if c.is_control() || c.is_whitespace() => format!("U+{:04X}", c as u32),
        c => format!("`{c}`"),
    }
}

/// `c` percent-encoded (its UTF-8 bytes), e.g. `%22` for `"`.
fn percent_encoded(c: char) -> String {
    let mut buf = [0; 4];
    c.encode_utf8(&mut buf)
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect()
}

/// Longest HTTP path accepted: well inside HAProxy's 16 KiB buffer for a health-check request.
pub(crate) const MAX_HTTP_PATH: usize = 4096;

/// What an HTTP path in the stack is used as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathUse {
    /// A request target (health check, load path): `?query` allowed.
    Target,
    /// A `path_beg` prefix: HAProxy's `path` has no query string, so neither may the prefix.
    Prefix,
}

/// Why `p` is not an origin-form request target (RFC 9112 §3.2.1: `absolute-path [ "?"
/// query ]`, RFC 3986 `pchar`s and `/`, `?` in the query), as (problem, fix); `None` if it is.
/// Refuses exactly what could end an HAProxy word or line or a request line: spaces, quotes,
/// `#`, `\`, control characters, NUL, non-ASCII.
fn http_path_problem(p: &str, what: PathUse) -> Option<(String, String)> {
    let example = match what {
        PathUse::Target => "`/api/items?limit=10`",
        PathUse::Prefix => "`/api/`",
    };
    if p.is_empty() {
        return Some((
            "is empty".into(),
            format!("write an absolute path, e.g. {example}"),
        ));
    }
    if p.len() > MAX_HTTP_PATH {
        return Some((
            format!("is {} bytes long", p.len()),
            format!("write at most {MAX_HTTP_PATH} bytes"),
        ));
    }
    let chars: Vec<char> = p.chars().collect();
    if chars[0] != '/' {
        return Some((
            format!("starts with {}, not `/`", char_name(chars[0])),
            format!("write an absolute path, e.g. {example}"),
        ));
    }
    let mut in_query = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        let ok = c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/".contains(c);
        match c {
            _ if ok => {}
            '%' => {
                let hex = |j: usize| chars.get(j).is_some_and(char::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return Some((
                        format!("has a `%` at character {at} that does not start a percent-escape"),
                        "a `%` must be followed by two hex digits (`%2F`); write `%25` for a literal `%`"
                            .into(),
                    ));
                }
                i += 2;
            }
            '?' if what == PathUse::Prefix => {
                return Some((
                    format!("has a `?` at character {at}"),
                    "HAProxy matches `path_prefix` against the path without its query string, so a prefix with `?` never matches; remove the query, or write `%3F` for a literal `?`".into(),
                ));
            }
            '?' => in_query = true,
            '#' => {
                return Some((
                    format!("has a `#` at character {at}"),
                    "`#` starts a fragment, which is never sent to a server; write `%23` if it belongs to the path".into(),
                ));
            }
            c => {
                let part = if in_query {
                    "an HTTP query"
                } else {
                    "an HTTP path"
                };
                return Some((
                    format!(
                        "has {} at character {at}, which cannot appear in {part}",
                        char_name(c)
                    ),
                    format!("percent-encode it as `{}`", percent_encoded(c)),
                ));
            }
        }
        i += 1;
    }
    None
}

/// Why `k` is not a portable environment variable name (`[A-Za-z_][A-Za-z0-9_]*`, POSIX.1
/// §8.1), `None` if it is. `=` would split the `KEY=VALUE` pair Docker is given elsewhere.
fn env_key_problem(k: &str) -> Option<String> {
    let Some(first) = k.chars().next() else {
        return Some("is empty".into());
    };
    if let Some((i, c)) = k
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Some(format!("has {} at character {}", char_name(c), i + 1));
    }
    first
        .is_ascii_digit()
        .then(|| "starts with a digit".to_string())
}

const ENV_KEY_HELP: &str =
    "an environment variable name is letters, digits and `_`, not starting with a digit, e.g. `BACKEND_URL`";

/// Why an environment value cannot be given to a container, `None` if it can. Docker refuses
/// a NUL (the environment is C strings); newlines are fine in a container's environment and
/// never reach a configuration file, so multi-line values are allowed.
fn env_value_problem(v: &str) -> Option<String> {
    v.chars()
        .position(|c| c == '\0')
        .map(|i| format!("has a NUL (U+0000) at character {}", i + 1))
}

/// Reads and validates a stack file.
pub fn load(file: &Path, recipes: &RecipeImages) -> Result<Stack, Diagnostics> {
    let bytes = std::fs::read(file).map_err(|e| {
        Diagnostics::new(vec![Diagnostic::in_file(
            file,
            format!(
                "could not read the stack file `{}`: {e}",
                shown(&file.display().to_string())
            ),
        )
        .help("pass another file with --stack, or create recipes/stack.toml")])
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        // Point at the first byte that is not UTF-8: everything before it is valid text.
        let valid = e.utf8_error().valid_up_to();
        let before = std::str::from_utf8(&e.as_bytes()[..valid]).unwrap_or_default();
        Diagnostics::new(vec![Diagnostic::at(
            file,
            before,
            valid..valid,
            format!(
                "the stack file is not UTF-8 text: byte 0x{:02X} at offset {valid}",
                e.as_bytes()[valid]
            ),
        )
        .help("TOML files are UTF-8; save the file as UTF-8")])
    })?;
    parse(file, &text, recipes)
}

/// Parses and validates stack text (`file` is only used in diagnostics).
pub fn parse(file: &Path, text: &str, recipes: &RecipeImages) -> Result<Stack, Diagnostics> {
    let raw: RawStack = diag::parse_toml(file, text)?;
    let mut cx = Ctx {
        file,
        text,
        diags: Vec::new(),
    };
    let names: Vec<String> = raw.services.get_ref().keys().cloned().collect();
    let known: Vec<&str> = names.iter().map(String::as_str).collect();
    if names.is_empty() {
        cx.err_help(
            raw.services.span(),
            "the stack has no services",
            "add e.g. `[services.backend]` with `image = \"backend\"`",
        );
    }
    let recipe_names: Vec<&str> = recipes.keys().map(String::as_str).collect();
    let mut services = Vec::new();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, s) in raw.services.get_ref() {
        if !valid_name(name) {
            cx.err_help(
                s.span(),
                format!("invalid service name `{}`", shown(name)),
                format!(
                    "use lowercase letters, digits and `-`, starting with a letter (at most {MAX_SERVICE_NAME}: the name is part of DNS names)"
                ),
            );
        }
        let s = s.get_ref();
        match recipes.get(s.image.get_ref()) {
            Some(true) => {}
            Some(false) => {
                cx.err_help(
                    s.image.span(),
                    format!("recipe `{}` has no [image] table", shown(s.image.get_ref())),
                    "add an [image] table to the recipe so `builder package` makes an image",
                );
            }
            None => {
                let d = cx.err(
                    s.image.span(),
                    format!("no recipe `{}`", shown(s.image.get_ref())),
                );
                d.label = did_you_mean(s.image.get_ref(), &recipe_names)
                    .map(|x| format!("did you mean `{x}`?"));
                d.help = Some(format!(
                    "`image` names a recipe in recipes/ (known: {})",
                    recipe_names.join(", ")
                ));
            }
        }
        let replicas = cx.int(&s.replicas, 1, 1, MAX_REPLICAS.into(), "replicas");
        let port = cx.int(&s.port, 8080, 1, 65535, "port") as u16;
        let health = s.health.as_ref().map_or("/".to_string(), |h| {
            cx.http_path(
                h,
                PathUse::Target,
                "health path",
                &format!("services.{}.health", shown(name)),
            )
        });
        let mut env = BTreeMap::new();
        for (k, v) in &s.env {
            let (k_span, k) = (k.span(), k.get_ref());
            if let Some(problem) = env_key_problem(k) {
                cx.err_help(
                    k_span,
                    format!(
                        "invalid environment variable name `{}` (services.{}.env): it {problem}",
                        shown(k),
                        shown(name)
                    ),
                    ENV_KEY_HELP,
                );
            }
            if let Some(problem) = env_value_problem(v.get_ref()) {
                cx.err_help(
                    v.span(),
                    format!(
                        "invalid value of `{}` (services.{}.env): it {problem}",
                        shown(k),
                        shown(name)
                    ),
                    "Docker cannot pass a NUL in an environment variable; remove it",
                );
            }
            match references(v.get_ref()) {
                Err(msg) => {
                    cx.err(v.span(), msg);
                }
                Ok(refs) => {
                    for r in refs {
                        if r == *name {
                            cx.err(
                                v.span(),
                                format!("service `{}` refers to itself", shown(name)),
                            );
                        } else if known.contains(&r.as_str()) {
                            deps.entry(name.clone()).or_default().insert(r);
                        } else {
                            let d = cx.err(
                                v.span(),
                                format!("unknown service `{{{}}}` in `{}`", shown(&r), shown(k)),
                            );
                            d.label = did_you_mean(&r, &known)
                                .map(|x| format!("did you mean `{{{x}}}`?"));
                            d.help = Some(format!("services: {}", known.join(", ")));
                        }
                    }
                }
            }
            env.insert(k.clone(), v.get_ref().clone());
        }
        services.push(Service {
            name: name.clone(),
            image: s.image.get_ref().clone(),
            replicas,
            port,
            health,
            env,
        });
    }
    let order = start_order(&names, &deps);
    if order.is_none() {
        cx.err_help(
            raw.services.span(),
            "the services' environment references form a cycle",
            "a service may only refer to services that can start before it",
        );
    }
    let order = order.unwrap_or(names.clone());
    services.sort_by_key(|s| order.iter().position(|n| *n == s.name));

    let lb = raw.load_balancer.get_ref();
    if lb.kind.get_ref() != "haproxy" {
        cx.one_of(&lb.kind, &["haproxy"], "load balancer kind");
    }
    cx.service_ref(&lb.service, &known, "load balancer service");
    let mut routes = Vec::new();
    for r in &lb.routes {
        let r = r.get_ref();
        cx.service_ref(&r.service, &known, "route service");
        let path_prefix = cx.http_path(
            &r.path_prefix,
            PathUse::Prefix,
            "path prefix",
            "load_balancer.routes",
        );
        routes.push(Route {
            path_prefix,
            service: r.service.get_ref().clone(),
        });
    }
    let balance = match &lb.balance {
        Some(b) => {
            cx.one_of(b, BALANCE, "balance algorithm");
            b.get_ref().clone()
        }
        None => "leastconn".to_string(),
    };
    let retry_on = match &lb.retry_on {
        Some(list) => {
            for v in list.get_ref() {
                if !RETRY_ON.contains(&v.as_str()) {
                    cx.err_help(
                        list.span(),
                        format!("unknown retry-on keyword `{}`", shown(v)),
                        format!("use any of: {}", RETRY_ON.join(", ")),
                    );
                }
            }
            list.get_ref().clone()
        }
        None => vec![
            "conn-failure".into(),
            "empty-response".into(),
            "response-timeout".into(),
        ],
    };
    let base = lb.base.as_ref().map_or("haproxy".into(), |b| {
        let n = b.get_ref();
        let ok = n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && n.len() <= 64
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if !ok {
            cx.err_help(
                b.span(),
                format!("invalid base image name `{}` (load_balancer.base)", shown(n)),
                "name a file of base-images/ without `.toml`: lowercase letters, digits, `.`, `_` and `-`, e.g. `haproxy`",
            );
        }
        n.clone()
    });
    let load_balancer = LoadBalancer {
        kind: lb.kind.get_ref().clone(),
        base,
        service: lb.service.get_ref().clone(),
        routes,
        balance,
        check_interval: cx.duration(&lb.check_interval, Duration::from_secs(1), "check_interval"),
        rise: cx.int(&lb.rise, 2, 1, 100, "rise"),
        fall: cx.int(&lb.fall, 2, 1, 100, "fall"),
        retries: cx.int(&lb.retries, 3, 0, 100, "retries"),
        redispatch: lb.redispatch.unwrap_or(true),
        retry_on,
        timeout_connect: cx.duration(
            &lb.timeout_connect,
            Duration::from_secs(1),
            "timeout_connect",
        ),
        timeout_client: cx.duration(
            &lb.timeout_client,
            Duration::from_secs(30),
            "timeout_client",
        ),
        timeout_server: cx.duration(
            &lb.timeout_server,
            Duration::from_secs(10),
            "timeout_server",
        ),
        timeout_check: cx.duration(&lb.timeout_check, Duration::from_secs(3), "timeout_check"),
        ready_timeout: cx.duration(&lb.ready_timeout, Duration::from_secs(90), "ready_timeout"),
    };

    let l = raw.load.get_ref();
    let rate = *l.rate.get_ref();
    if !(rate > 0.0 && rate <= crate::load::MAX_RATE) {
        cx.err_help(
            l.rate.span(),
            format!("rate {rate} is out of range"),
            format!(
                "use a rate above 0 and at most {} requests per second",
                crate::load::MAX_RATE
            ),
        );
    }
    let mut paths = Vec::new();
    for p in l.paths.get_ref() {
        let p = p.get_ref();
        paths.push(LoadPath {
            path: cx.http_path(&p.path, PathUse::Target, "path", "load.paths"),
            weight: cx.int(
                &p.weight,
                1,
                1,
                i64::from(crate::load::target::MAX_WEIGHT),
                "weight",
            ),
        });
    }
    if paths.is_empty() {
        cx.err_help(
            l.paths.span(),
            "no load paths",
            "add e.g. `paths = [{ path = \"/\", weight = 1 }]`",
        );
    }
    let load = LoadSpec {
        rate,
        duration: cx.duration_of(&l.duration, "duration"),
        warmup: l.warmup.as_ref().map_or(Duration::ZERO, |w| {
            crate::load::parse_duration(w.get_ref()).unwrap_or_else(|e| {
                cx.err_help(
                    w.span(),
                    format!("invalid warmup `{}`", shown(w.get_ref())),
                    format!(
                        "{}; write a duration such as `5s`, or `0s` for none",
                        shown(&e.to_string())
                    ),
                );
                Duration::ZERO
            })
        }),
        timeout: cx.duration(&l.timeout, Duration::from_secs(2), "timeout"),
        paths,
    };
    // The load generator's own limits, reported here with positions instead of after a deploy.
    cx.at_most(
        &l.timeout,
        load.timeout,
        crate::load::MAX_TIMEOUT,
        "timeout",
    );
    let total = load.duration.saturating_add(load.warmup);
    if total > crate::load::MAX_DURATION {
        cx.err_help(
            l.duration.span(),
            format!(
                "warmup plus duration is {:.0}s, more than the load generator's limit of {}s",
                total.as_secs_f64(),
                crate::load::MAX_DURATION.as_secs()
            ),
            "shorten `duration` or `warmup`",
        );
    }

    let t = raw.thresholds.get_ref();
    let max_p99 = *t.max_p99_ms.get_ref();
    if !(max_p99 > 0.0 && max_p99.is_finite()) {
        cx.err_help(
            t.max_p99_ms.span(),
            format!("max_p99_ms {max_p99} is out of range"),
            "write a positive number of milliseconds, e.g. 1000",
        );
    }
    let thresholds = Thresholds {
        min_rate_ratio: cx.ratio(&t.min_rate_ratio, "min_rate_ratio"),
        min_success: cx.ratio(&t.min_success, "min_success"),
        max_p99_ms: max_p99,
    };

    let restart = match &raw.restart {
        None => RestartSpec {
            policy: "on-failure".into(),
            max_retries: 10,
            unhealthy_grace: Duration::from_secs(10),
            builder_max: 3,
        },
        Some(r) => {
            let r = r.get_ref();
            let policy = match &r.policy {
                Some(p) => {
                    cx.one_of(p, POLICIES, "restart policy");
                    p.get_ref().clone()
                }
                None => "on-failure".into(),
            };
            RestartSpec {
                policy,
                max_retries: cx.int(&r.max_retries, 10, 0, 1000, "max_retries"),
                unhealthy_grace: cx.duration(
                    &r.unhealthy_grace,
                    Duration::from_secs(10),
                    "unhealthy_grace",
                ),
                builder_max: cx.int(&r.builder_max, 3, 0, 100, "builder_max"),
            }
        }
    };
    if !cx.diags.is_empty() {
        return Err(Diagnostics::new(cx.diags));
    }
    Ok(Stack {
        file: file.to_path_buf(),
        services,
        load_balancer,
        load,
        thresholds,
        restart,
    })
}

/// Dependencies first, otherwise alphabetical; `None` on a cycle.
fn start_order(names: &[String], deps: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let mut order: Vec<String> = Vec::new();
    while order.len() < names.len() {
        let next = names.iter().find(|n| {
            !order.contains(n)
                && deps
                    .get(*n)
                    .is_none_or(|d| d.iter().all(|x| order.contains(x)))
        })?;
        order.push(next.clone());
    }
    Some(order)
}

/// Most containers of one service.
pub const MAX_REPLICAS: u32 = 64;

/// Command-line changes to the stack, applied after validation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    pub rate: Option<f64>,
    #[serde(skip)]
    pub duration: Option<Duration>,
    #[serde(skip)]
    pub warmup: Option<Duration>,
    /// `--frontends N`: replicas of the load balancer's default-route service (applied before
    /// `replicas`, which may name that service too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frontends: Option<u32>,
    /// `service=N`
    pub replicas: Vec<String>,
    /// `service:KEY=VALUE`
    pub env: Vec<String>,
    pub min_rate_ratio: Option<f64>,
    pub min_success: Option<f64>,
    pub max_p99_ms: Option<f64>,
}

impl Overrides {
    pub fn is_empty(&self) -> bool {
        self.rate.is_none()
            && self.duration.is_none()
            && self.warmup.is_none()
            && self.frontends.is_none()
            && self.replicas.is_empty()
            && self.env.is_empty()
            && self.min_rate_ratio.is_none()
            && self.min_success.is_none()
            && self.max_p99_ms.is_none()
    }
}

impl Stack {
    fn service_mut(&mut self, name: &str, flag: &str) -> anyhow::Result<&mut Service> {
        let known: Vec<String> = self.services.iter().map(|s| s.name.clone()).collect();
        self.services
            .iter_mut()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                let refs: Vec<&str> = known.iter().map(String::as_str).collect();
                let hint = did_you_mean(name, &refs)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                usage(format!(
                    "{flag}: no service `{}` in the stack{hint}; services: {}",
                    shown(name),
                    known.join(", ")
                ))
            })
    }

    /// Applies command-line overrides; every bad value is a usage error naming the flag.
    pub fn apply(&mut self, o: &Overrides) -> anyhow::Result<()> {
        if let Some(r) = o.rate {
            if !(r > 0.0 && r <= crate::load::MAX_RATE) {
                return Err(usage(format!(
                    "--rate {r} is out of range; use above 0 and at most {}",
                    crate::load::MAX_RATE
                )));
            }
            self.load.rate = r;
        }
        if let Some(d) = o.duration {
            if d.is_zero() {
                return Err(usage("--duration must be above 0, e.g. 30s"));
            }
            self.load.duration = d;
        }
        if let Some(w) = o.warmup {
            self.load.warmup = w;
        }
        let total = self.load.duration.saturating_add(self.load.warmup);
        if total > crate::load::MAX_DURATION {
            return Err(usage(format!(
                "warm-up plus duration is {:.0}s (--warmup/--duration or the stack's `load.warmup`/`load.duration`); the limit is {}s: pass a shorter --duration or --warmup",
                total.as_secs_f64(),
                crate::load::MAX_DURATION.as_secs()
            )));
        }
        if let Some(n) = o.frontends {
            if !(1..=MAX_REPLICAS).contains(&n) {
                return Err(usage(format!(
                    "--frontends {n}: N must be from 1 to {MAX_REPLICAS}"
                )));
            }
            let svc = self.load_balancer.service.clone();
            self.service_mut(&svc, "--frontends")?.replicas = n;
        }
        for r in &o.replicas {
            let (svc, n) = r.split_once('=').ok_or_else(|| {
                usage(format!(
                    "--replicas `{}`: write SERVICE=N, e.g. frontend=8",
                    shown(r)
                ))
            })?;
            let n: u32 = n
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=MAX_REPLICAS).contains(n))
                .ok_or_else(|| {
                    usage(format!(
                        "--replicas `{}`: N must be from 1 to {MAX_REPLICAS}",
                        shown(r)
                    ))
                })?;
            self.service_mut(svc.trim(), "--replicas")?.replicas = n;
        }
        for e in &o.env {
            let (svc, kv) = e.split_once(':').ok_or_else(|| {
                usage(format!(
                    "--env `{}`: write SERVICE:KEY=VALUE, e.g. backend:FAILURE_RATE=0.2",
                    shown(e)
                ))
            })?;
            let (k, v) = kv
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    usage(format!(
                        "--env `{}`: write SERVICE:KEY=VALUE, e.g. backend:FAILURE_RATE=0.2",
                        shown(e)
                    ))
                })?;
            if let Some(problem) = env_key_problem(k) {
                return Err(usage(format!(
                    "--env `{}`: invalid environment variable name `{}`: it {problem}; {ENV_KEY_HELP}",
                    shown(e),
                    shown(k)
                )));
            }
            if let Some(problem) = env_value_problem(v) {
                return Err(usage(format!(
                    "--env `{}`: the value {problem}, which Docker cannot pass",
                    shown(e)
                )));
            }
            let known: Vec<String> = self.services.iter().map(|s| s.name.clone()).collect();
            let refs = references(v).map_err(|m| usage(format!("--env `{}`: {m}", shown(e))))?;
            for r in refs {
                if !known.contains(&r) || r == svc {
                    return Err(usage(format!(
                        "--env `{}`: `{{{}}}` is not another service of the stack; services: {}",
                        shown(e),
                        shown(&r),
                        known.join(", ")
                    )));
                }
            }
            self.service_mut(svc, "--env")?
                .env
                .insert(k.to_string(), v.to_string());
        }
        let ratio = |x: f64, flag: &str| {
            if (0.0..=1.0).contains(&x) {
                Ok(x)
            } else {
                Err(usage(format!(
                    "{flag} {x} is out of range; write a ratio from 0 to 1"
                )))
            }
        };
        if let Some(x) = o.min_rate_ratio {
            self.thresholds.min_rate_ratio = ratio(x, "--min-rate-ratio")?;
        }
        if let Some(x) = o.min_success {
            self.thresholds.min_success = ratio(x, "--min-success")?;
        }
        if let Some(x) = o.max_p99_ms {
            if !(x > 0.0 && x.is_finite()) {
                return Err(usage(format!(
                    "--max-p99 {x} must be a positive number of milliseconds"
                )));
            }
            self.thresholds.max_p99_ms = x;
        }
        Ok(())
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
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
}
