//! `builder key generate`: makes a repository signing key. The secret key goes only where
//! `--out` says (mode 0600, never inside the project or dist/); the public key is exported
//! beside it as `PATH.pub.asc` (armored) and `PATH.pub.gpg` (binary, for apt `signed-by`).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;

use super::Paths;
use crate::error::usage;
use crate::report::Reporter;
use crate::sign::{self, Signer};

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make an OpenPGP signing key for environment repositories
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Name in the key's user ID
    #[arg(long, default_value = "builder repository signing key")]
    pub name: String,
    /// E-mail in the key's user ID
    #[arg(long)]
    pub email: Option<String>,
    /// Where to write the secret key (outside the project); the public key goes to
    /// PATH.pub.asc and PATH.pub.gpg
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Replace existing key files
    #[arg(long)]
    pub force: bool,
}

#[derive(Serialize)]
struct Generated {
    secret_key: PathBuf,
    public_key_asc: PathBuf,
    public_key_gpg: PathBuf,
    fingerprint: String,
    user_id: String,
}

pub(super) fn run(args: KeyArgs, paths: &Paths, reporter: &Reporter) -> anyhow::Result<u8> {
    match args.command {
        KeyCommand::Generate(g) => generate(g, paths, reporter),
    }
}

/// The path made absolute with symlinks resolved as far as the path exists.
fn resolve(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut out = existing
        .canonicalize()
        .unwrap_or_else(|_| existing.to_path_buf());
    for name in rest.into_iter().rev() {
        out.push(name);
    }
    out
}

fn generate(args: GenerateArgs, paths: &Paths, reporter: &Reporter) -> anyhow::Result<u8> {
    let out = resolve(&args.out);
    // The project counts only where it looks like one, so running from $HOME with the
    // default `--project .` does not forbid `~/.config/...`.
    let project = &paths.project;
    let is_project = project.join("recipes").is_dir() || project.join(".git").exists();
    for (what, dir, applies) in [
        ("dist directory", &paths.dist, true),
        ("project", project, is_project),
    ] {
        let dir = resolve(dir);
        if applies && out.starts_with(&dir) {
            return Err(usage(format!(
                "refusing to write a private key into the {what} `{}`: keys there end up in \
                 artifacts or commits; write it elsewhere, e.g. `--out ~/.config/builder/signing-key.asc`",
                dir.display()
            )));
        }
    }
    if args.name.trim().is_empty() || args.name.contains(['<', '>', '\n']) {
        return Err(usage(
            "`--name` must be non-empty and must not contain `<`, `>` or newlines",
        ));
    }
    let user_id = match &args.email {
        Some(e) if e.contains(['<', '>', ' ', '\n']) || !e.contains('@') => {
            return Err(usage(format!("`--email {e}` is not an e-mail address")))
        }
        Some(e) => format!("{} <{e}>", args.name.trim()),
        None => args.name.trim().to_string(),
    };
    let with_suffix = |suffix: &str| {
        let mut p = out.clone().into_os_string();
        p.push(suffix);
        PathBuf::from(p)
    };
    let asc = with_suffix(".pub.asc");
    let gpg = with_suffix(".pub.gpg");
    if !args.force {
        for p in [&out, &asc, &gpg] {
            if p.exists() {
                return Err(usage(format!(
                    "`{}` already exists: choose another `--out` or pass `--force` to replace it",
                    p.display()
                )));
            }
        }
    }
    let (secret, public) = sign::generate_key(&user_id)?;
    let signer = Signer::from_armored(&secret)?;
    sign::write_file_atomic(&out, secret.as_bytes(), 0o600, true)?;
    sign::write_file_atomic(&asc, public.as_bytes(), 0o644, true)?;
    sign::write_file_atomic(&gpg, &signer.public_key_binary(), 0o644, true)?;
    let result = Generated {
        secret_key: out,
        public_key_asc: asc,
        public_key_gpg: gpg,
        fingerprint: signer.fingerprint(),
        user_id,
    };
    if reporter.is_json() {
        reporter.json(&result)?;
    } else {
        reporter.status(
            "Generated",
            format!("Ed25519 signing key {}", result.fingerprint),
        );
        reporter.output(format!(
            "secret key: {}  (mode 0600; keep it out of the repository)\npublic key: {}\napt keyring: {}  (use as `signed-by`)",
            result.secret_key.display(),
            result.public_key_asc.display(),
            result.public_key_gpg.display()
        ));
    }
    Ok(crate::error::EXIT_OK)
}
