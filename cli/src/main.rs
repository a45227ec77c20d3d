//! `molt`: upgrades a self-hosted Docker Compose installation and never leaves it half-way.
//!
//! This file holds the command line (clap), logging setup, failpoint setup and the mapping of
//! errors to the exit codes documented in [`exit`].

mod cmd;
mod exit;
mod progress;
mod session;

use clap::{Parser, Subcommand};
use engine::Mode;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "molt",
    version,
    about = "Journaled, crash-safe upgrades of Docker Compose installations"
)]
struct Cli {
    /// Installation root.
    #[arg(long, global = true, env = "MOLT_ROOT", default_value = ".")]
    root: PathBuf,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process and matched at once: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a plan file of file-system steps (TOML, `[[step]] op = ...`) as a journaled run.
    Exec { file: PathBuf },
    /// Continue the unfinished run forward.
    Resume {
        /// Reset the loop breaker of a stuck run (after fixing its cause).
        #[arg(long)]
        force: bool,
    },
    /// Undo the unfinished run, last step first.
    Rollback {
        /// Reset the loop breaker of a stuck run (after fixing its cause).
        #[arg(long)]
        force: bool,
        /// After a committed upgrade: go back to the release and the data of this backup
        /// (writes since the backup are lost; molt says which and asks).
        #[arg(long, value_name = "BACKUP")]
        to: Option<String>,
        /// Do not ask (with --to).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Apply the documented recovery policy to an unfinished run (for boot scripts).
    Recover,
    /// Show the installation and its latest run.
    Status,
    /// Read the journal.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// Fetch and verify the vendor's manifest; say what an upgrade would install.
    Check {
        /// Choose the full package even when a patch applies.
        #[arg(long)]
        force_full: bool,
    },
    /// Upgrade to the release `check` chooses (or install the first one): one journaled run
    /// that ends exactly-old or exactly-new.
    Upgrade {
        /// Choose the full package even when a patch applies.
        #[arg(long)]
        force_full: bool,
        /// Install the manifest's release even when it is older than the installed one (the
        /// downgrade is journaled; the schema step still refuses destructive changes).
        #[arg(long)]
        allow_downgrade: bool,
        /// Print the plan (versions, package, bytes, disk, images, schema statements,
        /// services to stop) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation on a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Upgrade only to this version: refuse when the vendor's manifest offers another.
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        /// As the upgrade timer runs it: never asks; skips (exit 0, nothing changed) while
        /// held, outside the maintenance window, when the offered release is outside the
        /// pinned `[upgrade] versions`, or when the last upgrade to it rolled back.
        #[arg(long)]
        unattended: bool,
    },
    /// Make --root a molt installation: adopt the compose product running there (`--adopt
    /// --version V`, moved into molt's layout in place, one reversible journaled run), or write
    /// molt.toml for a new one and install its first release.
    Init(cmd::init::Init),
    /// Hold unattended upgrades (the upgrade timer skips until `molt unhold`).
    Hold {
        /// Why, for whoever finds the hold.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Release the hold on unattended upgrades.
    Unhold,
    /// Replace this molt with the newest signed release of molt (`[self_update]` in molt.toml);
    /// never a downgrade; the old binary is kept as `molt.old` beside it.
    SelfUpdate {
        /// Say what would be installed; change nothing.
        #[arg(long)]
        check: bool,
        /// Put the kept `molt.old` back (once).
        #[arg(long, conflicts_with = "check")]
        rollback: bool,
        /// The molt binary to replace or roll back (default: this one).
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
    },
    /// Download and stage the release `check` chooses, without cutting over.
    Fetch {
        #[arg(long)]
        force_full: bool,
    },
    /// Unattended runs: the maintenance window.
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// The download cache.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Vendor: pack a release directory into packages and update the manifest.
    Pack {
        /// The release directory (with release.toml).
        release: PathBuf,
        /// Where packages and manifest.json go.
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        product: String,
        #[arg(long, default_value = std::env::consts::ARCH)]
        arch: String,
        /// A previous release directory to make a patch from (repeatable).
        #[arg(long)]
        previous: Vec<PathBuf>,
        /// The version range the patches apply to (default: exactly the previous version).
        #[arg(long)]
        from: Option<String>,
        #[arg(long, default_value = "")]
        notes: String,
        /// Prefix for package URLs in the manifest (default: relative to the manifest).
        #[arg(long)]
        base_url: Option<String>,
        /// Release time to write (RFC 3339; default now).
        #[arg(long)]
        released_at: Option<String>,
        /// The manifest's sequence number (default: one more than the manifest in --out, or
        /// 1). Installations refuse a manifest older than the newest they trusted.
        #[arg(long)]
        sequence: Option<u64>,
        /// How long the manifest stays valid (installations refuse it after that; publish a
        /// fresh one before). A duration such as `90days` or `12h`.
        #[arg(long, default_value = "90days")]
        expires_in: humantime::Duration,
        /// Sign manifest.json with this minisign secret key (repeat it when the vendor's
        /// root asks for more than one signature).
        #[arg(long)]
        secret_key: Vec<PathBuf>,
        /// Environment variable holding the secret key's password.
        #[arg(long)]
        password_env: Option<String>,
    },
    /// Vendor: publish the next root document (`N.root.json` and its signatures) in --out:
    /// the keys allowed to sign manifests. The first root is signed by its own keys; a
    /// rotation must be signed by the previous root's keys and by the new ones.
    Root {
        /// The directory the manifest is published from.
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        product: String,
        /// A public key (`.pub` file) allowed to sign manifests (repeatable).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// How many of the keys must sign.
        #[arg(long, default_value_t = 1)]
        threshold: u32,
        /// How long the root stays valid.
        #[arg(long, default_value = "365days")]
        expires_in: humantime::Duration,
        /// Secret keys to sign with: the new root's and, for a rotation, the previous root's
        /// (repeatable).
        #[arg(long, required = true)]
        secret_key: Vec<PathBuf>,
        #[arg(long)]
        password_env: Option<String>,
    },
    /// Vendor: create a minisign key pair.
    Keygen {
        #[arg(long)]
        secret_key: PathBuf,
        #[arg(long)]
        public_key: PathBuf,
        #[arg(long)]
        password_env: Option<String>,
    },
    /// Vendor: sign a file (writes FILE.minisig; with several keys, one signature each).
    Sign {
        file: PathBuf,
        #[arg(long, required = true)]
        secret_key: Vec<PathBuf>,
        #[arg(long)]
        password_env: Option<String>,
    },
    /// The current release's Docker services.
    Services {
        #[command(subcommand)]
        command: ServicesCommand,
    },
    /// The current release's Docker images.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// The database schema: compare files, plan or apply a migration.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Backups of the persistent paths.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Print shell completions for SHELL (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    Man,
    /// Show molt at work in a scratch installation: a run, a crash, recovery, a rollback.
    Demo {
        /// Directory for the scratch installation (created; must not exist or be empty).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// The upgrade window (molt.toml `[schedule]`) and whether an upgrade may start now.
    Show {
        /// Decide for this instant instead of now (RFC 3339).
        #[arg(long)]
        at: Option<String>,
    },
    /// Write the systemd units: boot-time recovery, the upgrade timer, the backup timer
    /// (`[schedule] backup`), and enable them when systemd runs.
    Install {
        /// Where the units go.
        #[arg(long, default_value = "/etc/systemd/system")]
        unit_dir: PathBuf,
        /// Write the units only: no `systemctl daemon-reload`/`enable --now`.
        #[arg(long)]
        no_enable: bool,
    },
    /// Disable and remove the units `install` wrote (files without molt's mark are kept).
    Remove {
        #[arg(long, default_value = "/etc/systemd/system")]
        unit_dir: PathBuf,
        #[arg(long)]
        no_enable: bool,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Remove downloaded packages and partial downloads (except what an unfinished run needs).
    Clean,
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// The statements that turn OLD.sql's schema into NEW.sql's (offline).
    Diff {
        old: PathBuf,
        new: PathBuf,
        /// Database for tables the files name without one.
        #[arg(long)]
        database: Option<String>,
    },
    /// The statements that would bring the live database to FILE's schema (changes nothing).
    Plan {
        #[arg(long, env = "MOLT_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// The schema file (default: the current release's `[database] schema`).
        #[arg(long)]
        desired: Option<PathBuf>,
        /// Show destructive changes as allowed.
        #[arg(long)]
        allow_destructive: bool,
        /// Rename instead of dropping and adding, keeping the data: `db.table=new_table` or
        /// `db.table.column=new_column` (added to the release's `[renames]`). Repeatable.
        #[arg(long = "rename", value_name = "OLD=NEW")]
        renames: Vec<String>,
    },
    /// Migrate the live database to FILE's schema, as a journaled run.
    Apply {
        #[arg(long, env = "MOLT_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// The schema file (default: the current release's `[database] schema`, with the
        /// destructive changes its `allow_destructive` names allowed).
        #[arg(long)]
        desired: Option<PathBuf>,
        /// Allow dropping tables, columns, indexes and narrowing types.
        #[arg(long)]
        allow_destructive: bool,
        /// Rename instead of dropping and adding, keeping the data: `db.table=new_table` or
        /// `db.table.column=new_column` (added to the release's `[renames]`). Repeatable.
        #[arg(long = "rename", value_name = "OLD=NEW")]
        renames: Vec<String>,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum ServicesCommand {
    /// Start the services (all, or the named ones) and wait for the health gate.
    Start { services: Vec<String> },
    /// Stop the services (all, or the named ones).
    Stop { services: Vec<String> },
    /// Stop, start, and wait for the health gate.
    Restart { services: Vec<String> },
    /// The project's containers: state, health, one-shot exit codes.
    Status,
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Load the current release's image tarballs (images already present are skipped).
    Load,
    /// Remove images molt loaded that no release directory still uses.
    Prune {
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Back up the persistent paths (`[backup] paths` in molt.toml, default `shared`).
    Create {
        /// A path to back up instead of the configured ones (repeatable).
        #[arg(long = "path")]
        paths: Vec<String>,
        /// Keep the backup as a directory instead of compressing it to tar.zst.
        #[arg(long)]
        no_compress: bool,
    },
    /// Every backup, newest first; incomplete ones are marked and never restorable.
    List,
    /// Check a backup byte for byte against its manifest.
    Verify { id: String },
    /// Put a backup in place of the persistent paths (verified first, swapped atomically).
    Restore { id: String },
    /// Delete backups beyond the retention policy (`[retention]` in molt.toml).
    Prune {
        #[arg(long)]
        keep_last: Option<usize>,
        #[arg(long)]
        keep_days: Option<u64>,
        /// Only say what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum JournalCommand {
    /// One line per run.
    List,
    /// Every transition of one run, with time, duration and error.
    Show { run: u64 },
    /// Rebuild a damaged journal from its readable records (sled, its mirror records.log)
    /// into a fresh one; the damaged journal is kept aside as journal.damaged-SECS.
    /// `molt recover` does this by itself.
    Salvage,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MOLT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// `MOLT_FAILPOINTS="name=action;name=action"` arms crash points (tests and the demo only;
/// see `engine::failpoint`). Actions use the `fail` crate's syntax, e.g. `2*off->return`.
fn init_failpoints() -> anyhow::Result<()> {
    let Ok(spec) = std::env::var("MOLT_FAILPOINTS") else {
        return Ok(());
    };
    if !cfg!(feature = "failpoints") {
        anyhow::bail!("MOLT_FAILPOINTS is set but this molt was built without failpoints");
    }
    for item in spec.split(';').filter(|s| !s.trim().is_empty()) {
        let (name, action) = item
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("MOLT_FAILPOINTS item {item:?} is not name=action"))?;
        fail::cfg(name.trim(), action.trim())
            .map_err(|e| anyhow::anyhow!("failpoint {name}: {e}"))?;
    }
    Ok(())
}

/// Write generated text to stdout; a reader that stops early (`| head`) is not an error.
fn print_bytes(bytes: &[u8]) -> anyhow::Result<u8> {
    use std::io::Write;
    match std::io::stdout().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(exit::OK),
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let json = cli.json;
    if !json && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        steps::report::install(Box::new(progress::Bars));
    }
    let root = cli.root;
    let inst = || steps::Installation::open(&root).map_err(|e| exit::coded(exit::ERROR, e));
    match cli.command {
        Command::Demo { dir } => cmd::demo::run(dir).await,
        Command::Exec { file } => cmd::run::exec(&inst()?, &file, json).await,
        Command::Resume { force } => {
            cmd::run::attach(&inst()?, Some(Mode::Resume), force, json).await
        }
        Command::Rollback {
            to: Some(backup),
            yes,
            ..
        } => cmd::upgrade::rollback_to(&inst()?, &backup, yes, json).await,
        Command::Rollback { force, .. } => {
            cmd::run::attach(&inst()?, Some(Mode::Rollback), force, json).await
        }
        Command::Recover => cmd::run::attach(&inst()?, None, false, json).await,
        Command::Status => cmd::status::status(&inst()?, json),
        Command::Schedule {
            command: ScheduleCommand::Show { at },
        } => cmd::schedule::show(&inst()?, at.as_deref(), json),
        Command::Schedule {
            command:
                ScheduleCommand::Install {
                    unit_dir,
                    no_enable,
                },
        } => cmd::schedule::install(&inst()?, &unit_dir, !no_enable, json),
        Command::Schedule {
            command:
                ScheduleCommand::Remove {
                    unit_dir,
                    no_enable,
                },
        } => cmd::schedule::remove(&inst()?, &unit_dir, !no_enable, json),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut cmd, "molt", &mut text);
            print_bytes(&text)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut text = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut text)?;
            print_bytes(&text)
        }
        Command::Init(init) => cmd::init::init(&inst()?, init, json).await,
        Command::Hold { reason } => cmd::schedule::hold(&inst()?, &reason, json),
        Command::Unhold => cmd::schedule::unhold(&inst()?, json),
        Command::SelfUpdate {
            check,
            rollback,
            binary,
        } => {
            cmd::self_update::self_update(&inst()?, binary.as_deref(), check, rollback, json).await
        }
        Command::Cache {
            command: CacheCommand::Clean,
        } => cmd::release::cache_clean(&inst()?, json),
        Command::Check { force_full } => cmd::release::check(&inst()?, force_full, json).await,
        Command::Upgrade {
            force_full,
            allow_downgrade,
            dry_run,
            yes,
            to,
            unattended,
        } => {
            let want = steps::plans::check::Want {
                force_full,
                allow_downgrade,
            };
            let how = cmd::upgrade::How {
                dry_run,
                yes: yes || unattended,
                to,
                unattended,
            };
            cmd::upgrade::upgrade(&inst()?, want, how, json).await
        }
        Command::Fetch { force_full } => cmd::release::fetch(&inst()?, force_full, json).await,
        Command::Pack {
            release,
            out,
            product,
            arch,
            previous,
            from,
            notes,
            base_url,
            released_at,
            sequence,
            expires_in,
            secret_key,
            password_env,
        } => cmd::release::pack(
            cmd::release::PackArgs {
                release,
                out,
                product,
                arch,
                previous,
                from,
                notes,
                base_url,
                released_at,
                sequence,
                expires_in: expires_in.into(),
                secret_key,
                password_env,
            },
            json,
        ),
        Command::Keygen {
            secret_key,
            public_key,
            password_env,
        } => cmd::release::keygen(&secret_key, &public_key, &password_env),
        Command::Root {
            out,
            product,
            keys,
            threshold,
            expires_in,
            secret_key,
            password_env,
        } => cmd::release::root(
            cmd::release::RootArgs {
                out,
                product,
                keys,
                threshold,
                expires_in: expires_in.into(),
                secret_keys: secret_key,
                password_env,
            },
            json,
        ),
        Command::Sign {
            file,
            secret_key,
            password_env,
        } => {
            let out = cmd::release::sign_file(&file, &secret_key, &password_env)?;
            println!("wrote {}", out.display());
            Ok(exit::OK)
        }
        Command::Services { command } => {
            use steps::plans::ServicesAction as A;
            match command {
                ServicesCommand::Start { services } => {
                    cmd::services::action(&inst()?, A::Start, services, json).await
                }
                ServicesCommand::Stop { services } => {
                    cmd::services::action(&inst()?, A::Stop, services, json).await
                }
                ServicesCommand::Restart { services } => {
                    cmd::services::action(&inst()?, A::Restart, services, json).await
                }
                ServicesCommand::Status => cmd::services::status(&inst()?, json).await,
            }
        }
        Command::Images { command } => match command {
            ImagesCommand::Load => cmd::services::load(&inst()?, json).await,
            ImagesCommand::Prune { dry_run } => cmd::services::prune(&inst()?, dry_run, json).await,
        },
        Command::Schema { command } => match command {
            SchemaCommand::Diff { old, new, database } => {
                cmd::schema::diff_files(&old, &new, database, json)
            }
            SchemaCommand::Plan {
                database_url,
                desired,
                allow_destructive,
                renames,
            } => {
                cmd::schema::plan(
                    &inst()?,
                    database_url,
                    desired.as_deref(),
                    allow_destructive,
                    &cmd::schema::parse_renames(&renames)?,
                    json,
                )
                .await
            }
            SchemaCommand::Apply {
                database_url,
                desired,
                allow_destructive,
                renames,
                dry_run,
            } => {
                cmd::schema::apply(
                    &inst()?,
                    database_url,
                    desired.as_deref(),
                    allow_destructive,
                    &cmd::schema::parse_renames(&renames)?,
                    dry_run,
                    json,
                )
                .await
            }
        },
        Command::Backup { command } => match command {
            BackupCommand::Create { paths, no_compress } => {
                cmd::backup::create(&inst()?, paths, !no_compress, json).await
            }
            BackupCommand::List => cmd::backup::list(&inst()?, json),
            BackupCommand::Verify { id } => cmd::backup::verify(&inst()?, &id, json),
            BackupCommand::Restore { id } => cmd::backup::restore(&inst()?, &id, json).await,
            BackupCommand::Prune {
                keep_last,
                keep_days,
                dry_run,
            } => cmd::backup::prune(&inst()?, keep_last, keep_days, dry_run, json).await,
        },
        Command::Journal { command } => match command {
            JournalCommand::List => cmd::journal::list(&inst()?, json),
            JournalCommand::Show { run } => cmd::journal::show(&inst()?, run, json),
            JournalCommand::Salvage => cmd::journal::salvage(&inst()?, json),
        },
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = init_failpoints().and_then(|()| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(run(cli)))
    });
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("molt: {e:#}");
            std::process::ExitCode::from(exit::code_of(&e))
        }
    }
}
