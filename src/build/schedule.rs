//! Which engine of the pool a build goes to, and which engine an image it needs is sent
//! from. Pure: the executor and `builder plan` feed it what they know (each engine's CPUs,
//! architecture, running builds, what it holds).
//!
//! The rule: among the live engines of the build's architecture (and not the one that just
//! lost it), the one where the build makes the fewest running builds per CPU,
//! `(running + 1) / cpus`; on a tie, the one that holds more of what the build needs (its
//! builder image, its cache volumes), so nothing has to be sent and the tool cache is warm;
//! then the first listed. Load first: a cold engine that is idle beats a warm one that is
//! busy, since two builds on one engine's CPUs take about as long as sending the builder
//! image once (see README, "Building on several engines").

/// One engine as the scheduler sees it.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub cpus: u32,
    /// Go's words (`amd64`).
    pub arch: String,
    /// False once it lost a build (it stopped answering).
    pub alive: bool,
    /// Builds running on it now.
    pub running: usize,
}

/// What one build asks of an engine.
#[derive(Debug, Clone, Default)]
pub(crate) struct Need {
    /// The architecture it must run on (the builder image's); `None`: any.
    pub arch: Option<String>,
    /// Per slot: how many of the things the build uses the engine holds already (builder
    /// image, cache volumes).
    pub holds: Vec<usize>,
    /// A slot not to use (the engine that just lost this build).
    pub avoid: Option<usize>,
}

/// The slot for a build, or `None` when no live engine of its architecture is left.
pub(crate) fn choose(slots: &[Slot], need: &Need) -> Option<usize> {
    let mut best: Option<(usize, f64, usize)> = None;
    for (i, s) in slots.iter().enumerate() {
        if !s.alive || need.avoid == Some(i) {
            continue;
        }
        if need.arch.as_deref().is_some_and(|a| a != s.arch) {
            continue;
        }
        let load = (s.running + 1) as f64 / f64::from(s.cpus.max(1));
        let holds = need.holds.get(i).copied().unwrap_or(0);
        let better = match best {
            None => true,
            Some((_, bl, bh)) => load < bl - 1e-9 || ((load - bl).abs() <= 1e-9 && holds > bh),
        };
        if better {
            best = Some((i, load, holds));
        }
    }
    best.map(|(i, _, _)| i)
}

/// The engine to send an image to slot `to` from: a live engine other than `to` that holds
/// the image (`holds`, per slot) and has not failed a send of it yet (`tried`), the least
/// busy (running builds per CPU: the send competes with them for its disk and network);
/// on a tie the first listed. `None`: no engine is left to send from.
pub(crate) fn send_source(
    slots: &[Slot],
    holds: &[bool],
    to: usize,
    tried: &[usize],
) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, s) in slots.iter().enumerate() {
        if i == to || !s.alive || !holds.get(i).copied().unwrap_or(false) || tried.contains(&i) {
            continue;
        }
        let load = s.running as f64 / f64::from(s.cpus.max(1));
        if best.is_none_or(|(_, bl)| load < bl - 1e-9) {
            best = Some((i, load));
        }
    }
    best.map(|(i, _)| i)
}

/// Where each of `needs` would go when they start in order, `jobs` at a time, and each
/// finishes before the one `jobs` places later starts (builds of similar length): what
/// `builder plan` shows. `slots` are taken as idle.
pub(crate) fn simulate(slots: &[Slot], needs: &[Need], jobs: usize) -> Vec<Option<usize>> {
    let mut slots = slots.to_vec();
    let mut placed: Vec<Option<usize>> = Vec::with_capacity(needs.len());
    for (n, need) in needs.iter().enumerate() {
        if n >= jobs.max(1) {
            if let Some(done) = placed[n - jobs.max(1)] {
                slots[done].running = slots[done].running.saturating_sub(1);
            }
        }
        let at = choose(&slots, need);
        if let Some(i) = at {
            slots[i].running += 1;
        }
        placed.push(at);
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `_name`: what the tests call the engine.
    fn slot(_name: &str, cpus: u32, running: usize) -> Slot {
        Slot {
            cpus,
            arch: "amd64".into(),
            alive: true,
            running,
        }
    }

    fn need(holds: &[usize]) -> Need {
        Need {
            arch: Some("amd64".into()),
            holds: holds.to_vec(),
            avoid: None,
        }
    }

    #[test]
    fn idle_engines_tie_and_the_one_holding_the_image_wins() {
        let slots = [slot("a", 2, 0), slot("b", 2, 0)];
        assert_eq!(choose(&slots, &need(&[0, 2])), Some(1));
        assert_eq!(choose(&slots, &need(&[1, 0])), Some(0));
        // Nothing held anywhere: the first listed.
        assert_eq!(choose(&slots, &need(&[0, 0])), Some(0));
    }

    #[test]
    fn fewest_running_builds_per_cpu_beats_locality() {
        let slots = [slot("a", 2, 1), slot("b", 2, 0)];
        assert_eq!(choose(&slots, &need(&[2, 0])), Some(1));
        // 8 CPUs with 3 running (4/8) beat 2 CPUs with 0 running (1/2 is equal: locality).
        let slots = [slot("small", 2, 0), slot("big", 8, 3)];
        assert_eq!(choose(&slots, &need(&[0, 1])), Some(1));
        let slots = [slot("small", 2, 0), slot("big", 8, 4)];
        assert_eq!(choose(&slots, &need(&[0, 1])), Some(0));
    }

    #[test]
    fn dead_avoided_and_foreign_engines_are_not_used() {
        let mut slots = [slot("a", 2, 0), slot("b", 2, 0), slot("arm", 64, 0)];
        slots[2].arch = "arm64".into();
        let mut n = need(&[2, 0, 2]);
        assert_eq!(choose(&slots, &n), Some(0));
        n.avoid = Some(0);
        assert_eq!(choose(&slots, &n), Some(1));
        slots[1].alive = false;
        assert_eq!(choose(&slots, &n), None);
        n.arch = None;
        assert_eq!(choose(&slots, &n), Some(2));
    }

    #[test]
    fn an_image_is_sent_from_another_holder_when_its_source_fails() {
        let mut slots = [
            slot("a", 2, 1),
            slot("b", 2, 0),
            slot("c", 2, 0),
            slot("d", 2, 0),
        ];
        // To d: a and c hold the image; c is idle, so c sends.
        let holds = [true, false, true, false];
        assert_eq!(send_source(&slots, &holds, 3, &[]), Some(2));
        // c died mid-send: a, busy as it is, sends instead.
        assert_eq!(send_source(&slots, &holds, 3, &[2]), Some(0));
        // Both failed: nothing left.
        assert_eq!(send_source(&slots, &holds, 3, &[2, 0]), None);
        // A lost engine is no source, nor the destination itself, nor one without it.
        slots[2].alive = false;
        assert_eq!(send_source(&slots, &holds, 3, &[]), Some(0));
        assert_eq!(
            send_source(&slots, &[true, true, false, true], 0, &[]),
            Some(1)
        );
        assert_eq!(
            send_source(&slots, &[true, false, false, true], 0, &[3]),
            None
        );
    }

    #[test]
    fn the_plan_spreads_builds_like_the_executor() {
        let slots = [slot("a", 2, 0), slot("b", 2, 0)];
        let needs = [need(&[2, 0]), need(&[2, 0]), need(&[2, 0])];
        assert_eq!(simulate(&slots, &needs, 2), vec![Some(0), Some(1), Some(0)]);
        assert_eq!(simulate(&slots, &needs, 1), vec![Some(0), Some(0), Some(0)]);
    }
}
