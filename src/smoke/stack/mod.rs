//! `recipes/stack.toml`: the smoke deployment (services, load balancer, load, thresholds,
//! restart policy). Parsed with spans and `deny_unknown_fields`, then validated like a recipe:
//! every problem is a diagnostic with file:line:col (exit code 2). Command-line overrides
//! ([`Overrides`]) are applied to the validated [`Stack`] afterwards and are usage errors.
//!
//! Stack text reaches HAProxy's configuration (paths, names), the containers' environment,
//! names and DNS aliases, and the load generator's request lines, so every such value is
//! checked here, before anything is deployed: HTTP paths are origin-form request targets,
//! environment keys are portable names, service names fit a DNS label. Messages echo user
//! text with control characters escaped (`diag::escape_controls`).
//!
//! - `raw`: the serde model with spans; `model`: the validated [`Stack`];
//! - `validate`: raw → model, reporting into a [`crate::diag::Collector`];
//! - `values`: checks of single values (paths, names, environment) shared with `overrides`;
//! - `overrides`: command-line [`Overrides`] applied to a validated stack.

mod model;
mod overrides;
mod raw;
#[cfg(test)]
mod tests;
mod validate;
mod values;

use std::path::Path;

pub(crate) use model::*;
pub(crate) use overrides::Overrides;
pub(crate) use validate::{parse, MAX_SWITCH_STEPS};
pub(crate) use values::expand;
#[cfg(test)]
pub(crate) use values::{references, MAX_SERVICE_NAME};

use crate::diag::{self, Diagnostics};

/// Most containers of one service.
pub(crate) const MAX_REPLICAS: u32 = 64;

/// Reads and validates a stack file.
pub(crate) fn load(file: &Path, recipes: &RecipeImages) -> Result<Stack, Diagnostics> {
    let text = diag::read_text(file, "stack file").map_err(|d| {
        // A file that is not there: say where the stack comes from.
        let items = d.items().iter().cloned().map(|d| {
            if d.line == 0 {
                d.help("pass another file with --stack, or create recipes/stack.toml")
            } else {
                d
            }
        });
        Diagnostics::new(items.collect())
    })?;
    parse(file, &text, recipes)
}
