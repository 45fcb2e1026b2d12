//! The one JUnit XML writer. The smoke gate's `junit.xml` (a testcase per threshold) and the
//! pipeline's (a testcase per stage, then the smoke gate's suite) are both built as
//! [`Suite`]s and rendered here, so the pipeline embeds the smoke suite from data instead of
//! re-reading and cutting the smoke file. Owns the XML shape and its escaping; knows nothing
//! of stages or thresholds.

use std::fmt::Write as _;

/// One `<testsuite>`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Suite {
    pub name: String,
    /// Seconds, written with millisecond precision.
    pub time: f64,
    /// RFC 3339.
    pub timestamp: String,
    /// `<properties>`, in order; none writes no `<properties>` element.
    pub properties: Vec<(String, String)>,
    pub cases: Vec<Case>,
    /// Which count besides `tests` and `failures` the suite states.
    pub counts: Counts,
}

/// The optional count attribute of a `<testsuite>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counts {
    /// `skipped="<n>"` (the pipeline: stages that did not run).
    Skipped,
    /// `errors="0"` (the smoke gate: a run stopped before the gate is a failure of type
    /// `error`, counted among the failures).
    Errors,
}

/// One `<testcase>`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Case {
    pub classname: String,
    pub name: String,
    /// Seconds.
    pub time: f64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Passed; `Some` is written as `<system-out>`.
    Passed(Option<String>),
    /// `<failure message=".." [type=".."]>text</failure>`.
    Failed {
        message: String,
        kind: Option<String>,
        text: String,
    },
    /// `<skipped/>`.
    Skipped,
}

/// A whole `junit.xml`: the XML declaration and a `<testsuites>` around `suites`. With a
/// `name`, `<testsuites>` also carries the name and the totals (tests, failures, time).
pub(crate) fn render(name: Option<&str>, suites: &[Suite]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    match name {
        Some(n) => {
            let tests: usize = suites.iter().map(|s| s.cases.len()).sum();
            let failures: usize = suites.iter().map(Suite::failures).sum();
            let time: f64 = suites.iter().map(|s| s.time).sum();
            let _ = writeln!(
                out,
                "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" time=\"{time:.3}\">",
                esc(n)
            );
        }
        None => out.push_str("<testsuites>\n"),
    }
    for s in suites {
        s.write(&mut out);
    }
    out.push_str("</testsuites>\n");
    out
}

impl Suite {
    fn failures(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed { .. }))
            .count()
    }

    fn write(&self, out: &mut String) {
        let failures = self.failures();
        let counts = match self.counts {
            Counts::Skipped => {
                let skipped = self
                    .cases
                    .iter()
                    .filter(|c| c.outcome == Outcome::Skipped)
                    .count();
                format!("skipped=\"{skipped}\"")
            }
            Counts::Errors => "errors=\"0\"".to_string(),
        };
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" {counts} time=\"{:.3}\" timestamp=\"{}\">",
            esc(&self.name),
            self.cases.len(),
            self.time,
            esc(&self.timestamp)
        );
        if !self.properties.is_empty() {
            out.push_str("    <properties>\n");
            for (k, v) in &self.properties {
                let _ = writeln!(
                    out,
                    "      <property name=\"{}\" value=\"{}\"/>",
                    esc(k),
                    esc(v)
                );
            }
            out.push_str("    </properties>\n");
        }
        for c in &self.cases {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                esc(&c.classname),
                esc(&c.name),
                c.time
            );
            match &c.outcome {
                Outcome::Passed(None) => {
                    out.push_str("/>\n");
                    continue;
                }
                Outcome::Passed(Some(text)) => {
                    let _ = write!(out, ">\n      <system-out>{}</system-out>", esc(text));
                }
                Outcome::Failed {
                    message,
                    kind,
                    text,
                } => {
                    let _ = write!(out, ">\n      <failure message=\"{}\"", esc(message));
                    if let Some(k) = kind {
                        let _ = write!(out, " type=\"{}\"", esc(k));
                    }
                    let _ = write!(out, ">{}</failure>", esc(text));
                }
                Outcome::Skipped => out.push_str(">\n      <skipped/>"),
            }
            out.push_str("\n    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
}

/// Escapes text for XML/HTML attribute and element content. Characters XML 1.0 does not
/// allow at all (control characters such as the ESC of a build log's colour codes, U+FFFE,
/// U+FFFF) become spaces, so a report stays parseable whatever it quotes.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            '\u{FFFE}' | '\u{FFFF}' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(name: &str, outcome: Outcome) -> Case {
        Case {
            classname: "pipeline".into(),
            name: name.into(),
            time: 1.5,
            outcome,
        }
    }

    #[test]
    fn esc_keeps_reports_parseable() {
        assert_eq!(
            esc("\u{1b}[31merror\u{1b}[0m: a<b & \"c\"\tok\n"),
            " [31merror [0m: a&lt;b &amp; &quot;c&quot;\tok\n"
        );
        assert_eq!(esc("\u{0}\u{7}\u{FFFE}é'"), "   é&apos;");
    }

    #[test]
    fn writes_every_outcome_in_the_shape_ci_systems_read() {
        let pipeline = Suite {
            name: "builder pipeline".into(),
            time: 3.0,
            timestamp: "2030-01-01T00:00:00Z".into(),
            properties: vec![],
            cases: vec![
                case("validate", Outcome::Passed(None)),
                case(
                    "build",
                    Outcome::Failed {
                        message: "no <go>".into(),
                        kind: None,
                        text: "no <go>\nat all".into(),
                    },
                ),
                case("smoke", Outcome::Skipped),
            ],
            counts: Counts::Skipped,
        };
        let smoke = Suite {
            name: "smoke r1".into(),
            time: 2.0,
            timestamp: "2030-01-01T00:00:01Z".into(),
            properties: vec![("run_id".into(), "r1".into())],
            cases: vec![
                Case {
                    classname: "smoke.gate".into(),
                    name: "p99".into(),
                    time: 2.0,
                    outcome: Outcome::Passed(Some("p99: 3 ms (threshold 5 ms)".into())),
                },
                Case {
                    classname: "smoke.gate".into(),
                    name: "errors".into(),
                    time: 2.0,
                    outcome: Outcome::Failed {
                        message: "too many".into(),
                        kind: Some("threshold".into()),
                        text: "too many (threshold 0, actual 1)".into(),
                    },
                },
            ],
            counts: Counts::Errors,
        };
        assert_eq!(
            render(None, &[pipeline, smoke.clone()]),
            r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="builder pipeline" tests="3" failures="1" skipped="1" time="3.000" timestamp="2030-01-01T00:00:00Z">
    <testcase classname="pipeline" name="validate" time="1.500"/>
    <testcase classname="pipeline" name="build" time="1.500">
      <failure message="no &lt;go&gt;">no &lt;go&gt;
at all</failure>
    </testcase>
    <testcase classname="pipeline" name="smoke" time="1.500">
      <skipped/>
    </testcase>
  </testsuite>
  <testsuite name="smoke r1" tests="2" failures="1" errors="0" time="2.000" timestamp="2030-01-01T00:00:01Z">
    <properties>
      <property name="run_id" value="r1"/>
    </properties>
    <testcase classname="smoke.gate" name="p99" time="2.000">
      <system-out>p99: 3 ms (threshold 5 ms)</system-out>
    </testcase>
    <testcase classname="smoke.gate" name="errors" time="2.000">
      <failure message="too many" type="threshold">too many (threshold 0, actual 1)</failure>
    </testcase>
  </testsuite>
</testsuites>
"#
        );
        assert!(render(Some("builder smoke"), &[smoke]).starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"builder smoke\" tests=\"2\" failures=\"1\" time=\"2.000\">\n  <testsuite name=\"smoke r1\""
        ));
    }
}
