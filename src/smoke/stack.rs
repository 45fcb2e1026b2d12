//! `recipes/stack.toml`: the smoke deployment (services, load balancer, load, thresholds,
//! restart policy). Parsed with spans and `deny_unknown_fields`, then validated like a recipe:
//! every problem is a diagnostic with file:line:col (exit code 2). Command-line overrides
//! ([`Overrides`]) are applied to the validated [`Stack`] afterwards and are usage errors.

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
    env: BTreeMap<String, S<String>>,
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
                    format!("invalid {what} `{}`", s.get_ref()),
                    "write a positive duration such as `30s`, `500ms` or `2m`",
                );
                Duration::from_secs(1)
            }
            Err(e) => {
                self.err_help(
                    s.span(),
                    format!("invalid {what} `{}`", s.get_ref()),
                    e.to_string(),
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
                    format!("{what} `{}` is too long", v.get_ref()),
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

    fn one_of(&mut self, v: &S<String>, allowed: &[&str], what: &str) {
        if !allowed.contains(&v.get_ref().as_str()) {
            let d = self.err(v.span(), format!("unknown {what} `{}`", v.get_ref()));
            d.label = did_you_mean(v.get_ref(), allowed).map(|s| format!("did you mean `{s}`?"));
            d.help = Some(format!("use one of: {}", allowed.join(", ")));
        }
    }

    fn service_ref(&mut self, v: &S<String>, known: &[&str], what: &str) {
        if !known.contains(&v.get_ref().as_str()) {
            let d = self.err(
                v.span(),
                format!("{what} `{}` is not a service of this stack", v.get_ref()),
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
                        None => return Err(format!("unclosed `{{` in `{value}`")),
                    }
                }
                out.push(name);
            }
            '}' => {
                return Err(format!(
                    "unmatched `}}` in `{value}`; write `}}}}` for a literal brace"
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

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 40
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Reads and validates a stack file.
pub fn load(file: &Path, recipes: &RecipeImages) -> Result<Stack, Diagnostics> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Diagnostics::new(vec![Diagnostic::in_file(
            file,
            format!("could not read the stack file `{}`: {e}", file.display()),
        )
        .help("pass another file with --stack, or create recipes/stack.toml")])
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
                format!("invalid service name `{name}`"),
                "use lowercase letters, digits and `-`, starting with a letter (at most 40)",
            );
        }
        let s = s.get_ref();
        match recipes.get(s.image.get_ref()) {
            Some(true) => {}
            Some(false) => {
                cx.err_help(
                    s.image.span(),
                    format!("recipe `{}` has no [image] table", s.image.get_ref()),
                    "add an [image] table to the recipe so `builder package` makes an image",
                );
            }
            None => {
                let d = cx.err(s.image.span(), format!("no recipe `{}`", s.image.get_ref()));
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
            if !h.get_ref().starts_with('/') || h.get_ref().contains(char::is_whitespace) {
                cx.err_help(
                    h.span(),
                    format!("invalid health path `{}`", h.get_ref()),
                    "write an absolute path without spaces, e.g. `/`",
                );
            }
            h.get_ref().clone()
        });
        let mut env = BTreeMap::new();
        for (k, v) in &s.env {
            match references(v.get_ref()) {
                Err(msg) => {
                    cx.err(v.span(), msg);
                }
                Ok(refs) => {
                    for r in refs {
                        if r == *name {
                            cx.err(v.span(), format!("service `{name}` refers to itself"));
                        } else if known.contains(&r.as_str()) {
                            deps.entry(name.clone()).or_default().insert(r);
                        } else {
                            let d = cx.err(v.span(), format!("unknown service `{{{r}}}` in `{k}`"));
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
        let p = r.path_prefix.get_ref();
        if !p.starts_with('/') || p.contains(char::is_whitespace) {
            cx.err_help(
                r.path_prefix.span(),
                format!("invalid path prefix `{p}`"),
                "write an absolute path without spaces, e.g. `/api/`",
            );
        }
        routes.push(Route {
            path_prefix: p.clone(),
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
                        format!("unknown retry-on keyword `{v}`"),
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
    let load_balancer = LoadBalancer {
        kind: lb.kind.get_ref().clone(),
        base: lb
            .base
            .as_ref()
            .map_or("haproxy".into(), |b| b.get_ref().clone()),
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
        if !p.path.get_ref().starts_with('/') || p.path.get_ref().contains(char::is_whitespace) {
            cx.err_help(
                p.path.span(),
                format!("invalid path `{}`", p.path.get_ref()),
                "write an absolute path without spaces, e.g. `/api/items`",
            );
        }
        paths.push(LoadPath {
            path: p.path.get_ref().clone(),
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
                    format!("invalid warmup `{}`", w.get_ref()),
                    format!("{e}; write a duration such as `5s`, or `0s` for none"),
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
                    "{flag}: no service `{name}` in the stack{hint}; services: {}",
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
                    "--replicas `{r}`: write SERVICE=N, e.g. frontend=8"
                ))
            })?;
            let n: u32 = n
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=MAX_REPLICAS).contains(n))
                .ok_or_else(|| {
                    usage(format!(
                        "--replicas `{r}`: N must be from 1 to {MAX_REPLICAS}"
                    ))
                })?;
            self.service_mut(svc.trim(), "--replicas")?.replicas = n;
        }
        for e in &o.env {
            let (svc, kv) = e.split_once(':').ok_or_else(|| {
                usage(format!(
                    "--env `{e}`: write SERVICE:KEY=VALUE, e.g. backend:FAILURE_RATE=0.2"
                ))
            })?;
            let (k, v) = kv
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    usage(format!(
                        "--env `{e}`: write SERVICE:KEY=VALUE, e.g. backend:FAILURE_RATE=0.2"
                    ))
                })?;
            let known: Vec<String> = self.services.iter().map(|s| s.name.clone()).collect();
            let refs = references(v).map_err(|m| usage(format!("--env `{e}`: {m}")))?;
            for r in refs {
                if !known.contains(&r) || r == svc {
                    return Err(usage(format!(
                        "--env `{e}`: `{{{r}}}` is not another service of the stack; services: {}",
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
}
