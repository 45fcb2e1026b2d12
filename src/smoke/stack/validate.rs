//! Raw stack → validated [`Stack`]: every problem is reported into one
//! [`Collector`] with its position, not only the first.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::model::*;
use super::raw::*;
use super::values::*;
use super::MAX_REPLICAS;
use crate::diag::{self, escape_controls, Collector, Diagnostics};

type S<T> = Spanned<T>;

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

/// The collector with the stack's own checks (durations, ranges, ratios, HTTP paths,
/// service references) on top.
struct Ctx<'a>(Collector<'a>);

impl<'a> Deref for Ctx<'a> {
    type Target = Collector<'a>;
    fn deref(&self) -> &Collector<'a> {
        &self.0
    }
}

impl DerefMut for Ctx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Ctx<'_> {
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
                    format!("invalid {what} `{}`", escape_controls(s.get_ref())),
                    "write a positive duration such as `30s`, `500ms` or `2m`",
                );
                Duration::from_secs(1)
            }
            Err(e) => {
                self.err_help(
                    s.span(),
                    format!("invalid {what} `{}`", escape_controls(s.get_ref())),
                    escape_controls(&e.to_string()),
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
                    format!("{what} `{}` is too long", escape_controls(v.get_ref())),
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
                format!(
                    "invalid {what} `{}` ({field}): it {problem}",
                    escape_controls(p)
                ),
                help,
            );
        }
        p.clone()
    }

    fn service_ref(&mut self, v: &S<String>, known: &[&str], what: &str) {
        if !known.contains(&v.get_ref().as_str()) {
            let d = self.err(
                v.span(),
                format!(
                    "{what} `{}` is not a service of this stack",
                    escape_controls(v.get_ref())
                ),
            );
            d.label = diag::suggestion(v.get_ref(), known);
            d.help = Some(format!("services: {}", known.join(", ")));
        }
    }
}

/// Parses and validates stack text (`file` is only used in diagnostics).
pub(crate) fn parse(file: &Path, text: &str, recipes: &RecipeImages) -> Result<Stack, Diagnostics> {
    let raw: RawStack = diag::parse_toml(file, text)?;
    let mut cx = Ctx(Collector::new(file, text));
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
                format!("invalid service name `{}`", escape_controls(name)),
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
                    format!(
                        "recipe `{}` has no [image] table",
                        escape_controls(s.image.get_ref())
                    ),
                    "add an [image] table to the recipe so `builder package` makes an image",
                );
            }
            None => {
                let d = cx.err(
                    s.image.span(),
                    format!("no recipe `{}`", escape_controls(s.image.get_ref())),
                );
                d.label = diag::suggestion(s.image.get_ref(), &recipe_names);
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
                &format!("services.{}.health", escape_controls(name)),
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
                        escape_controls(k),
                        escape_controls(name)
                    ),
                    ENV_KEY_HELP,
                );
            }
            if let Some(problem) = env_value_problem(v.get_ref()) {
                cx.err_help(
                    v.span(),
                    format!(
                        "invalid value of `{}` (services.{}.env): it {problem}",
                        escape_controls(k),
                        escape_controls(name)
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
                                format!("service `{}` refers to itself", escape_controls(name)),
                            );
                        } else if known.contains(&r.as_str()) {
                            deps.entry(name.clone()).or_default().insert(r);
                        } else {
                            let d = cx.err(
                                v.span(),
                                format!(
                                    "unknown service `{{{}}}` in `{}`",
                                    escape_controls(&r),
                                    escape_controls(k)
                                ),
                            );
                            d.label = diag::did_you_mean(&r, &known)
                                .map(|x| format!("did you mean `{{{x}}}`?"));
                            d.help = Some(format!("services: {}", known.join(", ")));
                        }
                    }
                }
            }
            env.insert(k.clone(), v.get_ref().clone());
        }
        let cpus = s.cpus.as_ref().and_then(|c| {
            crate::recipe::limits::cpus(*c.get_ref())
                .map_err(|help| {
                    cx.err_help(
                        c.span(),
                        format!(
                            "invalid cpus {} (services.{}.cpus)",
                            c.get_ref(),
                            escape_controls(name)
                        ),
                        help,
                    );
                })
                .ok()
        });
        let memory = s.memory.as_ref().and_then(|m| {
            crate::recipe::limits::memory(m.get_ref())
                .map_err(|help| {
                    cx.err_help(
                        m.span(),
                        format!(
                            "invalid memory {} (services.{}.memory)",
                            escape_controls(&m.get_ref().to_string()),
                            escape_controls(name)
                        ),
                        help,
                    );
                })
                .ok()
        });
        services.push(Service {
            name: name.clone(),
            image: s.image.get_ref().clone(),
            replicas,
            port,
            health,
            env,
            candidate_env: BTreeMap::new(),
            baseline_env: BTreeMap::new(),
            cpus,
            memory,
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
                        format!("unknown retry-on keyword `{}`", escape_controls(v)),
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
                format!("invalid base image name `{}` (load_balancer.base)", escape_controls(n)),
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
                    format!("invalid warmup `{}`", escape_controls(w.get_ref())),
                    format!(
                        "{}; write a duration such as `5s`, or `0s` for none",
                        escape_controls(&e.to_string())
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
    let canary = raw.canary.as_ref().map(|c| canary(&mut cx, c.get_ref()));
    if let (Some(c), Some(raw_c)) = (&canary, &raw.canary) {
        let total = load
            .warmup
            .saturating_add(load.duration)
            .saturating_add(c.switch_time());
        if total > crate::load::MAX_DURATION {
            cx.err_help(
                raw_c.span(),
                format!(
                    "warmup, duration and the canary switch take {:.0}s together, more than the load generator's limit of {}s",
                    total.as_secs_f64(),
                    crate::load::MAX_DURATION.as_secs()
                ),
                "shorten `load.duration`, `canary.step_duration` or `canary.switch_steps`",
            );
        }
    }
    let target = match &raw.target {
        Some(t) => {
            cx.one_of(t, &DeployTarget::NAMES, "target");
            DeployTarget::parse(t.get_ref()).unwrap_or_default()
        }
        None => DeployTarget::Containers,
    };
    let registry = raw.registry.as_ref().map(|r| r.get_ref().clone());
    cx.0.finish(Stack {
        file: file.to_path_buf(),
        services,
        load_balancer,
        load,
        thresholds,
        restart,
        canary,
        target,
        registry,
    })
}

/// Most steps of a canary switch.
pub(crate) const MAX_SWITCH_STEPS: usize = 20;
/// Longest `canary.step_duration`.
const MAX_STEP_DURATION: Duration = Duration::from_secs(600);

/// `[canary]`: every field checked with its position; defaults from [`CanarySpec::default`].
fn canary(cx: &mut Ctx<'_>, c: &RawCanary) -> CanarySpec {
    let d = CanarySpec::default();
    let baseline = c.baseline.as_ref().map(|b| {
        if let Err(msg) = crate::repo::check_env_name(b.get_ref()) {
            cx.err_help(
                b.span(),
                escape_controls(&msg).into_owned(),
                "name an environment of promote.toml's `environments`, e.g. `dev`",
            );
        }
        b.get_ref().clone()
    });
    let mut float =
        |v: &Option<S<f64>>, default: f64, ok: fn(f64) -> bool, what: &str, help: &str| match v {
            None => default,
            Some(x) if ok(*x.get_ref()) => *x.get_ref(),
            Some(x) => {
                cx.err_help(
                    x.span(),
                    format!("canary.{what} {} is out of range", x.get_ref()),
                    help,
                );
                default
            }
        };
    let alpha = float(
        &c.alpha,
        d.alpha,
        |x| x > 0.0 && x <= 0.5,
        "alpha",
        "write a significance level above 0 and at most 0.5, e.g. 0.01",
    );
    let max_latency_increase = float(
        &c.max_latency_increase,
        d.max_latency_increase,
        |x| (0.0..=10.0).contains(&x),
        "max_latency_increase",
        "write a ratio from 0 to 10, e.g. 0.1 for a tolerated 10% increase of p50 or p99",
    );
    let min_latency_increase_ms = float(
        &c.min_latency_increase_ms,
        d.min_latency_increase_ms,
        |x| (0.0..=60_000.0).contains(&x),
        "min_latency_increase_ms",
        "write milliseconds from 0 to 60000, e.g. 2 to let p50 or p99 count as worse only when \
         they rose by 2 ms or more",
    );
    let max_error_increase = float(
        &c.max_error_increase,
        d.max_error_increase,
        |x| (0.0..=1.0).contains(&x),
        "max_error_increase",
        "write a ratio from 0 to 1, e.g. 0.01 for one percentage point more errors",
    );
    let min_requests = u64::from(cx.int(
        &c.min_requests,
        d.min_requests as u32,
        1,
        1_000_000,
        "canary.min_requests",
    ));
    let weight = cx.int(&c.weight, d.weight, 1, 99, "canary.weight");
    let switch_steps = match &c.switch_steps {
        None => d.switch_steps.clone(),
        Some(list) => {
            let mut steps = Vec::new();
            for v in list.get_ref() {
                let n = cx.int(&Some(v.clone()), 100, 1, 100, "canary.switch_steps step");
                if steps.last().is_some_and(|last| *last >= n) {
                    cx.err_help(
                        v.span(),
                        format!(
                            "canary.switch_steps: step {n} does not rise above the one before it"
                        ),
                        "list the candidate's share in percent, rising, e.g. [10, 50, 100]",
                    );
                }
                steps.push(n);
            }
            if steps.last() != Some(&100) {
                cx.err_help(
                    list.span(),
                    "canary.switch_steps must end at 100",
                    "the switch ends with every request on the candidate, e.g. [10, 50, 100]",
                );
            }
            if steps.len() > MAX_SWITCH_STEPS {
                cx.err_help(
                    list.span(),
                    format!("canary.switch_steps has {} steps", steps.len()),
                    format!("list at most {MAX_SWITCH_STEPS}"),
                );
            }
            steps
        }
    };
    let step_duration = cx.duration(&c.step_duration, d.step_duration, "canary.step_duration");
    if let Some(v) = &c.step_duration {
        if step_duration > MAX_STEP_DURATION {
            cx.err_help(
                v.span(),
                format!(
                    "canary.step_duration `{}` is too long",
                    escape_controls(v.get_ref())
                ),
                format!("write at most {}s", MAX_STEP_DURATION.as_secs()),
            );
        }
    }
    let max_switch_failures = u64::from(cx.int(
        &c.max_switch_failures,
        0,
        0,
        1_000_000,
        "canary.max_switch_failures",
    ));
    CanarySpec {
        baseline,
        alpha,
        max_latency_increase,
        min_latency_increase_ms,
        max_error_increase,
        min_requests,
        weight,
        switch_steps,
        step_duration,
        max_switch_failures,
    }
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
