//! Command-line definitions (clap), and the requests of `zchroot::cmd`
//! they turn into. In the library, not the binary, so that `cargo xtask
//! man` renders the manual pages from the very definitions the binary parses.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::cmd::roots::DestroyRequest;
use crate::cmd::run::{EnvArg, Network, RunRequest};
use crate::cmd::RootRef;
use crate::export::ExportFormat;
use crate::kmod::Strategy;
use crate::rootfs::create::CreateSpec;
use crate::rootfs::spec::RootSpec;
use crate::targets::TargetFile;

#[derive(Debug, Parser)]
#[command(
    name = "zchroot",
    version,
    about = "Debian roots for foreign architectures, and kernel-module packages built in them"
)]
pub struct Cli {
    /// No progress display (warnings and errors still show).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Say more while working: a line for each package, file and retry.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Read release and architecture manifests from this directory instead
    /// of the ones built in (laid out like rootfs-manifests/).
    #[arg(long, global = true, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The command line as the binary parses it: [`Cli`]'s definitions, with
/// the global options listed once, in `zchroot --help` (every command still
/// accepts them, and its help says where they are), and each command's
/// help ending with its examples.
pub fn command() -> clap::Command {
    let top = Cli::command();
    let header = *top.get_styles().get_header();
    let globals: Vec<clap::Arg> = top
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.clone().hide(true))
        .collect();
    let names: Vec<String> = globals.iter().map(flag_name).collect();
    let note = format!(
        "{header}Global options:{header:#} {} (see 'zchroot --help')",
        names.join(", ")
    );
    let shown_examples = |path: &str| {
        let lines: Vec<String> = examples(path).iter().map(|e| format!("  {e}")).collect();
        format!("{header}Examples:{header:#}\n{}", lines.join("\n"))
    };
    fn below(
        sc: clap::Command,
        parent: &str,
        globals: &[clap::Arg],
        help: &dyn Fn(&str) -> String,
    ) -> clap::Command {
        let path = format!("{parent}{}", sc.get_name()).trim().to_owned();
        // A hidden copy of each global option: clap then propagates none of
        // its own, and the option is parsed here but listed only at the top.
        let sc = globals.iter().fold(sc, |sc, a| sc.arg(a.clone()));
        // A command's own text (run's exit statuses) stays above.
        let after = match sc.get_after_help() {
            Some(own) => format!("{own}\n\n{}", help(&path)),
            None => help(&path),
        };
        sc.after_help(after)
            .mut_subcommands(|s| below(s, &format!("{path} "), globals, help))
    }
    let help = |path: &str| format!("{note}\n\n{}", shown_examples(path));
    top.after_help(shown_examples(""))
        .mut_subcommands(|sc| below(sc, "", &globals, &help))
}

/// `-q` for a flag with a short form, else `--manifests DIR`.
fn flag_name(a: &clap::Arg) -> String {
    match (a.get_short(), a.get_long()) {
        (Some(c), _) => format!("-{c}"),
        (None, Some(l)) => match a.get_value_names() {
            Some([v, ..]) => format!("--{l} {v}"),
            _ => format!("--{l}"),
        },
        (None, None) => a.get_id().to_string(),
    }
}

/// Each command's examples, by its path below `zchroot` ("" for zchroot
/// itself): real command lines, checked against the definitions by a
/// test; a `#` starts a comment, a `>` the shell's redirection.
const EXAMPLES: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "zchroot doctor                   # what this host supports, and fixes",
            "zchroot create --arch arm64      # a Debian trixie arm64 root",
            "zchroot build-zfs                # ZFS for trixie's newest arm64 kernel, into ./",
        ],
    ),
    (
        "create",
        &[
            "zchroot create --arch arm64      # trixie-arm64: trixie, minbase",
            "zchroot create --arch armhf --release bookworm --name pi2",
            "zchroot create --arch riscv64 --variant buildd --include git,ca-certificates",
        ],
    ),
    (
        "run",
        &[
            "zchroot run trixie-arm64 uname -m    # aarch64",
            "zchroot run trixie-arm64 --user 1000 --workdir /tmp --env http_proxy -- apt-get update",
            "zchroot run --dir /srv/rootfs --bind /src:/src:ro -- make -C /src",
        ],
    ),
    (
        "shell",
        &[
            "zchroot shell trixie-arm64",
            "zchroot shell trixie-arm64 --user builder --bind ~/src:/work --workdir /work",
            "zchroot shell --dir /srv/rootfs --network none",
        ],
    ),
    (
        "list",
        &[
            "zchroot list            # the roots, their size and when last used",
            "zchroot list --json",
        ],
    ),
    (
        "destroy",
        &[
            "zchroot destroy trixie-arm64",
            "zchroot destroy --all --purge-cache     # every root, and the download cache",
        ],
    ),
    (
        "build-zfs",
        &[
            "zchroot build-zfs                       # trixie's ZFS, its newest arm64 kernel",
            "zchroot build-zfs --arch amd64 --kernel 6.12.118+deb13-amd64 -o debs/",
            "zchroot build-zfs --kernel-deb linux-image.deb --kernel-deb linux-headers.deb",
        ],
    ),
    (
        "build-dkms",
        &[
            "zchroot build-dkms v4l2loopback-dkms    # a *-dkms package of the release",
            "zchroot build-dkms ./my-module --arch armhf    # a directory with a dkms.conf",
            "zchroot build-dkms my-module.tar.gz --sha256 HEX -o debs/",
        ],
    ),
    (
        "target",
        &[
            "zchroot target add rpi --arch arm64 --release trixie --module zfs",
            "zchroot target list",
            "zchroot target show rpi",
        ],
    ),
    (
        "target add",
        &[
            "zchroot target add rpi --arch arm64 --release trixie --module zfs",
            "zchroot target add board --module v4l2loopback-dkms --kernel-deb-dir ~/kernels",
            "zchroot target add rpi --suites trixie,trixie-security --force",
        ],
    ),
    ("target list", &["zchroot target list"]),
    (
        "target show",
        &["zchroot target show rpi  # targets/rpi.toml, as it is"],
    ),
    (
        "target remove",
        &["zchroot target remove rpi      # its repository stays"],
    ),
    (
        "target check",
        &[
            "zchroot target check          # every target's file, after editing by hand",
            "zchroot target check rpi --no-archive-check",
        ],
    ),
    (
        "update",
        &[
            "zchroot update                    # every target",
            "zchroot update rpi --keep 2       # newest 2 kernels of each series",
            "zchroot update --install-timer --every weekly",
        ],
    ),
    (
        "repo",
        &[
            "zchroot repo key rpi --url http://laptop.local:8080/",
            "zchroot repo serve rpi",
        ],
    ),
    (
        "repo key",
        &[
            "zchroot repo key rpi --url http://laptop.local:8080/",
            "zchroot repo key rpi --url http://192.168.1.10:8080/ > rpi.asc",
        ],
    ),
    (
        "repo serve",
        &[
            "zchroot repo serve rpi                          # on 0.0.0.0:8080",
            "zchroot repo serve rpi --listen 127.0.0.1:8080",
            "zchroot repo serve rpi --min-rate 8192          # boards on a slow link",
        ],
    ),
    (
        "export",
        &[
            "zchroot export trixie-arm64 -o trixie-arm64.tar.zst",
            "zchroot export trixie-arm64 -o /srv/images/board.sqfs",
            "zchroot export trixie-arm64 -o board.img --size 2G --include-apt-lists",
        ],
    ),
    (
        "resolve",
        &[
            "zchroot resolve --arch arm64            # name version architecture suite",
            "zchroot resolve --arch arm64 --variant buildd --include zfs-dkms --json",
            "zchroot resolve --arch arm64 --download # every .deb into the cache",
        ],
    ),
    (
        "doctor",
        &[
            "zchroot doctor",
            "zchroot doctor --fix      # private state directories and lock files, stale binfmt entries",
            "zchroot doctor --json",
        ],
    ),
    (
        "completions",
        &[
            "zchroot completions bash > ~/.local/share/bash-completion/completions/zchroot",
            "zchroot completions zsh > ~/.zfunc/_zchroot",
            "zchroot completions fish > ~/.config/fish/completions/zchroot.fish",
        ],
    ),
];

/// The examples of the command at `path` ("target add"; "" for zchroot).
pub fn examples(path: &str) -> &'static [&'static str] {
    EXAMPLES
        .iter()
        .find(|(p, _)| *p == path)
        .map_or(&[], |(_, e)| e)
}

/// The commands, in the order a user meets them (`zchroot --help` lists
/// them so).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a Debian root from the archive (rootless for a normal user).
    #[command(override_usage = "zchroot create --arch <ARCH> [OPTIONS]")]
    Create(CreateArgs),
    /// Run a command inside a root, in a sandbox of its own.
    Run(RunArgs),
    /// An interactive shell inside a root.
    Shell(ShellArgs),
    /// List the roots.
    List(ListArgs),
    /// Remove roots (and with --purge-cache, the download cache).
    Destroy(DestroyArgs),
    /// Build the ZFS module for the target's kernel (build-dkms zfs-dkms,
    /// with ZFS's kernel range checked first).
    BuildZfs(BuildZfsArgs),
    /// Build a DKMS module for the target's kernel and package it as a .deb
    /// that depends on the package that really ships that kernel.
    BuildDkms(BuildDkmsArgs),
    /// The boards zchroot keeps modules for (config: targets/NAME.toml).
    #[command(subcommand)]
    Target(TargetCommand),
    /// For each target: build modules for the kernels its repository lacks,
    /// and publish them.
    Update(UpdateArgs),
    /// A target's apt repository: its key and the lines for the board, or
    /// serve it over HTTP.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Write a root out as a tarball (plain, .gz, .xz, .zst), a squashfs or
    /// an ext4 image, ownership as inside the root (rootless too; no
    /// mounting, no loop devices).
    Export(ExportArgs),
    /// Resolve the package set of a root, like `apt-get install -s`, and
    /// optionally download it into the cache.
    #[command(override_usage = "zchroot resolve --arch <ARCH> [OPTIONS]")]
    Resolve(ResolveArgs),
    /// What this host supports and what zchroot will use, with fixes.
    Doctor(DoctorArgs),
    /// Print the completion script for a shell (see the examples).
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete zchroot's commands and options in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A root made by `zchroot create`.
    #[arg(required_unless_present = "dir", conflicts_with = "dir")]
    pub name: Option<String>,
    /// A directory holding a root instead of a NAME.
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,
    /// What to write; without it, the file name says (.tar, .tar.gz,
    /// .tar.xz, .tar.zst, .squashfs/.sqfs, .ext4/.img; any other: tar).
    #[arg(long, value_enum)]
    pub format: Option<ExportFormat>,
    /// The file to write; a tarball is compressed as its name says.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// The size of an ext4 image, e.g. 2G or 512M (default: what the root needs, plus a quarter).
    #[arg(long, value_name = "SIZE", value_parser = crate::export::parse_size)]
    pub size: Option<u64>,
    /// Keep apt's package lists and downloaded .debs (left out by default, as mmdebstrap does).
    #[arg(long)]
    pub include_apt_lists: bool,
}

#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// Add a target (or replace one with --force).
    Add(Box<TargetAddArgs>),
    /// List the targets.
    List,
    /// Print a target's file.
    Show {
        /// The target's name.
        name: String,
    },
    /// Remove a target's file (its repository stays).
    Remove {
        /// The target's name.
        name: String,
    },
    /// Check targets' files (after editing them by hand) as `target add`
    /// checks its options.
    Check(TargetCheckArgs),
}

#[derive(Debug, Args)]
pub struct TargetCheckArgs {
    /// The targets to check (default: all).
    pub names: Vec<String>,
    /// Skip the checks that need the archive's indexes (module, flavour);
    /// `update` makes them anyway.
    #[arg(long)]
    pub no_archive_check: bool,
}

#[derive(Debug, Args)]
pub struct TargetAddArgs {
    /// The target's name (a file name: letters, digits, -, _ and .).
    pub name: String,
    /// The board's Debian architecture.
    #[arg(long, default_value = "arm64")]
    pub arch: String,
    /// The board's Debian release (trixie, bookworm).
    #[arg(long, alias = "suite", default_value = "trixie", value_name = "NAME")]
    pub release: String,
    /// Kernel flavour (default: the architecture's plain one).
    #[arg(long)]
    pub flavour: Option<String>,
    /// zfs, a *-dkms package, or a directory with a dkms.conf.
    #[arg(long, default_value = "zfs")]
    pub module: String,
    /// Which of the release's suites to follow for kernels, comma-separated
    /// (default: all of them, security updates included); +SUITE adds an
    /// opt-in one, e.g. +trixie-backports.
    #[arg(long, value_delimiter = ',', value_name = "[+]SUITE,...")]
    pub suites: Vec<String>,
    /// The board's own kernels: a directory of image + headers .debs.
    #[arg(long, value_name = "DIR")]
    pub kernel_deb_dir: Option<PathBuf>,
    /// Take the kernel packages from this signed apt archive (a vendor's,
    /// e.g. http://archive.raspberrypi.com/debian) instead of the release's.
    #[arg(long, value_name = "URL", requires = "kernel_keyring")]
    pub kernel_archive: Option<String>,
    /// The keyring --kernel-archive's InRelease is verified against (the
    /// vendor's key, which you get from the vendor).
    #[arg(long, value_name = "FILE", requires = "kernel_archive")]
    pub kernel_keyring: Option<PathBuf>,
    /// The suite of --kernel-archive (default: the release's name).
    #[arg(long, value_name = "SUITE", requires = "kernel_archive")]
    pub kernel_suite: Option<String>,
    /// The components of --kernel-archive, comma-separated (default: main).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "C,...",
        requires = "kernel_archive"
    )]
    pub kernel_components: Vec<String>,
    /// Fetch from this mirror instead of the release's main archive.
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Use this mirror instead of the release's security archive
    /// (http:// or https://; kept in the target's file).
    #[arg(long, value_name = "URL")]
    pub security_mirror: Option<String>,
    /// Verify Release files against this keyring instead of the release's.
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
    /// Publish the repository here (default: under the state directory).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// auto, cross or emulate.
    #[arg(long, value_enum, default_value_t = Strategy::Auto)]
    pub strategy: Strategy,
    /// Replace an existing target of that name.
    #[arg(long)]
    pub force: bool,
    /// Skip the checks that need the archive's indexes (module, flavour),
    /// e.g. offline; `update` makes them anyway.
    #[arg(long)]
    pub no_archive_check: bool,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Targets to update (default: all).
    pub names: Vec<String>,
    /// Keep the module packages of the newest N kernels of each kernel
    /// series (e.g. 6.12) and prune the rest; 0 keeps all.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub keep: usize,
    /// Write a systemd timer that runs `zchroot update` (a user timer; for
    /// root, a system one), or print the crontab line where there is no
    /// systemd, instead of updating.
    #[arg(long, conflicts_with = "remove_timer")]
    pub install_timer: bool,
    /// How often the timer runs (a systemd calendar: daily, weekly, hourly).
    #[arg(long, default_value = "daily", requires = "install_timer")]
    pub every: String,
    /// Remove the timer that --install-timer wrote.
    #[arg(long)]
    pub remove_timer: bool,
    /// Machine-readable summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Print the repository's public key and the lines a board needs.
    Key {
        /// The target whose repository it is.
        name: String,
        /// The URL the board reaches the repository at.
        #[arg(long, default_value = "http://LAPTOP:8080/")]
        url: String,
    },
    /// Serve the repository read-only over HTTP.
    Serve {
        /// The target whose repository to serve.
        name: String,
        /// The address and port to listen on (0.0.0.0: every interface).
        #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR:PORT")]
        listen: String,
        #[command(flatten)]
        limits: ServeLimits,
    },
}

/// The limits of `repo serve` against clients that hold connections.
#[derive(Debug, Args)]
pub struct ServeLimits {
    /// Connections served at once [default: 16].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,
    /// Connections one host (IPv4 address, IPv6 /64) may have at once;
    /// more are answered 503 [default: 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub per_host: Option<u16>,
    /// The slowest a client may read, in bytes per second: a response of
    /// SIZE bytes is cut after SIZE/RATE seconds, or --min-time if longer
    /// [default: 65536].
    #[arg(long, value_name = "RATE", value_parser = clap::value_parser!(u64).range(1..))]
    pub min_rate: Option<u64>,
    /// The seconds every response gets, however small [default: 60].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub min_time: Option<u64>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Fix what zchroot can itself: make its directories under the state,
    /// cache and config directories private (chmod 0700) and its lock files
    /// too (chmod 0600), and remove qemu entries a killed zchroot left in
    /// the host's binfmt_misc; then check.
    #[arg(long)]
    pub fix: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Name of the root (default: RELEASE-ARCH, e.g. trixie-arm64).
    #[arg(long)]
    pub name: Option<String>,
    /// Replace a root of the same name.
    #[arg(long)]
    pub force: bool,
    /// Run CMD (sh -c, $1 = the root's directory) on the host once the empty
    /// tree is made; repeatable.
    #[arg(long, value_name = "CMD")]
    pub setup_hook: Vec<String>,
    /// Run CMD once the Essential set is installed; `chroot:CMD` runs it
    /// inside the root; repeatable.
    #[arg(long, value_name = "CMD")]
    pub essential_hook: Vec<String>,
    /// Run CMD at the end, before the root gets its name; `chroot:CMD` runs
    /// it inside the root; repeatable.
    #[arg(long, value_name = "CMD")]
    pub customize_hook: Vec<String>,
    /// An apt.conf line for the root (/etc/apt/apt.conf.d/99zchroot);
    /// repeatable.
    #[arg(long, value_name = "OPT")]
    pub aptopt: Vec<String>,
    /// A dpkg.cfg line for the root (/etc/dpkg/dpkg.cfg.d/99zchroot), in
    /// effect while it is made; repeatable.
    #[arg(long, value_name = "OPT")]
    pub dpkgopt: Vec<String>,
    /// Build the root anew even when a template of the same package set is
    /// in the cache (and keep the result as the new template).
    #[arg(long)]
    pub no_template: bool,
}

#[derive(Debug, Args)]
pub struct BuildDkmsArgs {
    /// A Debian *-dkms package (zfs-dkms), a directory with a dkms.conf, or
    /// a tarball of one (with --sha256).
    pub source: String,
    /// SHA256 of a tarball SOURCE, checked before it is used.
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    #[command(flatten)]
    pub build: BuildArgs,
}

#[derive(Debug, Args)]
pub struct BuildZfsArgs {
    /// A zfs-dkms version of the suites (default: the newest, which matches
    /// the suite's zfsutils-linux).
    #[arg(long, value_name = "VERSION", conflicts_with = "zfs_source")]
    pub zfs: Option<String>,
    /// An upstream ZFS release tarball instead (needs --sha256).
    #[arg(long, value_name = "TARBALL", requires = "sha256")]
    pub zfs_source: Option<PathBuf>,
    /// SHA256 of --zfs-source, checked before it is used.
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    #[command(flatten)]
    pub build: BuildArgs,
}

/// The target of a module build.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The target's Debian architecture.
    #[arg(long, default_value = "arm64")]
    pub arch: String,
    /// The target's Debian release (trixie, bookworm).
    #[arg(long, alias = "suite", default_value = "trixie", value_name = "NAME")]
    pub release: String,
    /// Kernel release to build for (e.g. 6.12.117+deb13-arm64); repeatable.
    /// Default: the newest of the flavour's linux-image metapackage.
    #[arg(long = "kernel", value_name = "RELEASE")]
    pub kernels: Vec<String>,
    /// Your own kernel image and headers packages instead (e.g. from `make
    /// bindeb-pkg` or a board vendor); give both, repeat the option.
    #[arg(long = "kernel-deb", value_name = "FILE", conflicts_with = "kernels")]
    pub kernel_debs: Vec<PathBuf>,
    /// Take the kernel packages from this signed apt archive (a vendor's,
    /// e.g. http://archive.raspberrypi.com/debian) instead of the release's.
    #[arg(
        long,
        value_name = "URL",
        requires = "kernel_keyring",
        conflicts_with = "kernel_debs"
    )]
    pub kernel_archive: Option<String>,
    /// The keyring --kernel-archive's InRelease is verified against (the
    /// vendor's key, which you get from the vendor).
    #[arg(long, value_name = "FILE", requires = "kernel_archive")]
    pub kernel_keyring: Option<PathBuf>,
    /// The suite of --kernel-archive (default: the release's name).
    #[arg(long, value_name = "SUITE", requires = "kernel_archive")]
    pub kernel_suite: Option<String>,
    /// The components of --kernel-archive, comma-separated (default: main).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "C,...",
        requires = "kernel_archive"
    )]
    pub kernel_components: Vec<String>,
    /// Kernel flavour (default: the architecture's plain one).
    #[arg(long)]
    pub flavour: Option<String>,
    /// Strategy: cross (a native cross compiler in a root of this host's
    /// architecture: fast), emulate (DKMS inside a root of the target's
    /// architecture under qemu: the kernel's own compiler, slow), or auto
    /// (cross when the archive has its compiler and helpers, else emulate).
    #[arg(long, value_enum, default_value_t = Strategy::Auto)]
    pub strategy: Strategy,
    /// Where to write the .deb files.
    #[arg(short, long, default_value = ".", value_name = "DIR")]
    pub output: PathBuf,
    /// Sign the modules with this private key (PEM), e.g. your Secure Boot
    /// MOK; needs --sign-cert and openssl on this host, which signs them
    /// after the build (the key never enters the build root). Default:
    /// unsigned (or DKMS's throwaway key when the build root has openssl;
    /// zchroot says which).
    #[arg(long, value_name = "FILE", requires = "sign_cert")]
    pub sign_key: Option<PathBuf>,
    /// The X.509 certificate (DER or PEM) of --sign-key.
    #[arg(long, value_name = "FILE", requires = "sign_key")]
    pub sign_cert: Option<PathBuf>,
    /// Suites of the build roots (default: the release's); +SUITE adds an
    /// opt-in one, e.g. +trixie-backports for a newer ZFS.
    #[arg(long, value_delimiter = ',', value_name = "[+]SUITE,...")]
    pub suites: Vec<String>,
    /// Fetch from this mirror instead of the release's main archive.
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Use this mirror instead of the release's security archive
    /// (http:// or https://).
    #[arg(long, value_name = "URL")]
    pub security_mirror: Option<String>,
    /// Verify Release files against this keyring instead of the release's.
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// List the root templates in the cache (what a later `create` of the
    /// same package set copies), with their size, instead of the roots.
    #[arg(long)]
    pub templates: bool,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Roots to remove.
    #[arg(required_unless_present_any = ["all", "purge_cache"])]
    pub names: Vec<String>,
    /// Remove every root.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    /// Also empty the download cache (packages, indexes, qemu, root
    /// templates). With --all, the logs go too; the targets and their
    /// repositories' signing keys (which the boards trust) are kept, and
    /// named with the command that removes them.
    #[arg(long)]
    pub purge_cache: bool,
}

/// Which root to enter, and how.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// A directory holding a root (any Debian-like tree) instead of a NAME.
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,
    /// The root's architecture (default: a named root's recorded one; for
    /// --dir, found from its shell).
    #[arg(long)]
    pub arch: Option<String>,
    /// The release whose archive supplies qemu-user for foreign roots
    /// (default: the root's own, or trixie for --dir).
    #[arg(long, alias = "suite", value_name = "NAME")]
    pub release: Option<String>,
    /// Mirror for fetching qemu-user (http:// or https://).
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Bind a host path into the root: HOST[:GUEST][:ro|:rw] (default rw).
    /// Repeatable.
    #[arg(long, value_name = "HOST[:GUEST][:ro]")]
    pub bind: Vec<String>,
    /// The sandbox's network.
    #[arg(long, value_enum, default_value_t = Network::Host)]
    pub network: Network,
    /// Set NAME inside; a bare NAME passes the caller's value on (unset if
    /// the caller has none). Repeatable.
    #[arg(short, long, value_name = "NAME[=VALUE]")]
    pub env: Vec<EnvArg>,
    /// Run as USER[:GROUP]: names from the root's /etc/passwd and
    /// /etc/group, or numbers (default: root).
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Working directory inside the root (must exist; else exit 125).
    #[arg(short, long, alias = "cwd", default_value = "/", value_name = "DIR")]
    pub workdir: PathBuf,
}

/// The exit statuses of `run`.
const RUN_AFTER_HELP: &str = "\
Exit status: the command's own (128+N if killed by signal N); 125 if zchroot cannot
give it its --user or --workdir, 126 if it cannot be run, 127 if it is not found;
1 if zchroot itself fails first (no such root, sandbox not possible), 2 for bad arguments.";

/// The exit statuses of `shell`.
const SHELL_AFTER_HELP: &str = "\
Exit status: the shell's; 125, 126, 127, 1 and 2 as for `zchroot run`.";

#[derive(Debug, Args)]
#[command(after_help = RUN_AFTER_HELP)]
pub struct RunArgs {
    /// A root made by `zchroot create` (none with --dir).
    #[arg(required_unless_present = "dir")]
    pub name: Option<String>,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// The command and its arguments (after NAME; `--` before it is optional).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
#[command(after_help = SHELL_AFTER_HELP)]
pub struct ShellArgs {
    /// A root made by `zchroot create`.
    #[arg(required_unless_present = "dir", conflicts_with = "dir")]
    pub name: Option<String>,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

/// Which Debian, for which architecture.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Debian architecture of the root (amd64, arm64, armhf, riscv64).
    #[arg(long, value_name = "ARCH", required_unless_present = "arch_shorthand")]
    pub arch: Option<String>,
    /// `create ARCH`: the older spelling of `--arch ARCH`, still accepted.
    #[arg(value_name = "ARCH", hide = true, conflicts_with = "arch")]
    pub arch_shorthand: Option<String>,
    /// Debian release (a file of rootfs-manifests/: trixie, bookworm).
    #[arg(long, alias = "suite", default_value = "trixie", value_name = "NAME")]
    pub release: String,
    /// Package set to start from (minbase, buildd).
    #[arg(long, default_value = "minbase")]
    pub variant: String,
    /// More packages, comma-separated; PKG=VERSION pins a version.
    #[arg(long, value_delimiter = ',', value_name = "PKG[=VERSION],...")]
    pub include: Vec<String>,
    /// Archive components for every suite (default: the release's, main
    /// and contrib), e.g. main,contrib,non-free,non-free-firmware.
    #[arg(long, value_delimiter = ',', value_name = "COMPONENT,...")]
    pub components: Vec<String>,
    /// Suites to use (default: the release's); +SUITE adds an opt-in one,
    /// e.g. +trixie-backports.
    #[arg(long, value_delimiter = ',', value_name = "[+]SUITE,...")]
    pub suites: Vec<String>,
    /// Use this mirror instead of the release's main archive (http:// or
    /// https://; default: `mirror` of the config file).
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Use this mirror instead of the release's security archive (default:
    /// `security-mirror` of the config file).
    #[arg(long, value_name = "URL")]
    pub security_mirror: Option<String>,
    /// Verify Release files against this keyring instead of the release's.
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
    /// Downloads at once (default: `parallel-downloads` of the config
    /// file, or 4).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: Option<u16>,
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Also download and verify every package into the cache.
    #[arg(long)]
    pub download: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

// What the arguments ask the commands for.

impl TargetArgs {
    /// `--arch ARCH`, or the ARCH given the older way.
    pub fn arch(&self) -> &str {
        self.arch
            .as_deref()
            .or(self.arch_shorthand.as_deref())
            .expect("clap requires --arch or ARCH")
    }

    pub fn spec(&self) -> RootSpec {
        RootSpec {
            arch: self.arch().to_owned(),
            release: self.release.clone(),
            variant: self.variant.clone(),
            include: self
                .include
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect(),
            mirror: self.mirror.clone(),
            keyring: self.keyring.clone(),
            suites: nonempty(&self.suites),
            components: nonempty(&self.components),
        }
    }
}

/// A comma-separated list without its empty items.
fn nonempty(v: &[String]) -> Vec<String> {
    v.iter().filter(|s| !s.is_empty()).cloned().collect()
}

impl CreateArgs {
    pub fn spec(&self) -> CreateSpec {
        CreateSpec {
            target: self.target.spec(),
            name: self.name.clone(),
            force: self.force,
            hooks: crate::rootfs::hooks::HookSpec {
                setup: self.setup_hook.clone(),
                essential: self.essential_hook.clone(),
                customize: self.customize_hook.clone(),
                aptopt: self.aptopt.clone(),
                dpkgopt: self.dpkgopt.clone(),
            },
            use_template: !self.no_template,
        }
    }
}

impl SandboxArgs {
    fn request(&self, root: RootRef, argv: Vec<String>) -> RunRequest {
        RunRequest {
            root,
            arch: self.arch.clone(),
            suite: self.release.clone(),
            mirror: self.mirror.clone(),
            binds: self.bind.clone(),
            network: self.network,
            cwd: self.workdir.clone(),
            user: self.user.clone(),
            env: self.env.clone(),
            argv,
        }
    }
}

impl RunArgs {
    /// The request; exits with status 2 (as clap does) when no command is
    /// given. With `--dir`, the word clap took as NAME starts the command.
    pub fn request(&self) -> RunRequest {
        let mut argv = self.command.clone();
        let root = match (&self.sandbox.dir, &self.name) {
            (Some(dir), name) => {
                if let Some(first) = name {
                    argv.insert(0, first.clone());
                }
                RootRef::Dir(dir.clone())
            }
            (None, Some(name)) => RootRef::Name(name.clone()),
            (None, None) => unreachable!("clap requires NAME or --dir"),
        };
        if argv.is_empty() {
            use clap::CommandFactory;
            let mut cli = Cli::command();
            cli.build();
            let run = cli.find_subcommand_mut("run").expect("run exists");
            run.error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "the command to run is missing: zchroot run NAME CMD [ARG]... (or --dir PATH CMD [ARG]...)",
            )
            .exit()
        }
        self.sandbox.request(root, argv)
    }
}

impl ShellArgs {
    pub fn request(&self, argv: Vec<String>) -> RunRequest {
        let root = RootRef::from_args(self.name.as_deref(), self.sandbox.dir.as_deref())
            .expect("clap requires NAME or --dir");
        self.sandbox.request(root, argv)
    }
}

impl ExportArgs {
    pub fn root(&self) -> RootRef {
        RootRef::from_args(self.name.as_deref(), self.dir.as_deref())
            .expect("clap requires NAME or --dir")
    }

    pub fn request(&self) -> crate::cmd::roots::ExportRequest {
        crate::cmd::roots::ExportRequest {
            format: self.format,
            size_kib: self.size,
            include_apt_lists: self.include_apt_lists,
        }
    }
}

impl DestroyArgs {
    pub fn request(&self) -> DestroyRequest {
        DestroyRequest {
            names: self.names.clone(),
            all: self.all,
            purge_cache: self.purge_cache,
        }
    }
}

impl TargetAddArgs {
    /// The target as given (`cmd::boards::target_add` makes paths absolute).
    pub fn target(&self) -> TargetFile {
        TargetFile {
            arch: self.arch.clone(),
            release: self.release.clone(),
            flavour: self.flavour.clone(),
            module: self.module.clone(),
            suites: self.suites.clone(),
            kernel_deb_dir: self.kernel_deb_dir.clone(),
            kernel_archive: self.kernel_archive.clone(),
            kernel_keyring: self.kernel_keyring.clone(),
            kernel_suite: self.kernel_suite.clone(),
            kernel_components: self.kernel_components.clone(),
            mirror: self.mirror.clone(),
            security_mirror: self.security_mirror.clone(),
            keyring: self.keyring.clone(),
            repo: self.repo.clone(),
            strategy: self.strategy,
        }
    }
}

impl BuildArgs {
    /// The build of `source` (checked against `sha256` when a tarball).
    pub fn spec(&self, source: String, sha256: Option<String>) -> crate::kmod::BuildSpec {
        crate::kmod::BuildSpec {
            source,
            sha256,
            arch: self.arch.clone(),
            release: self.release.clone(),
            mirror: self.mirror.clone(),
            keyring: self.keyring.clone(),
            kernels: self.kernels.clone(),
            flavour: self.flavour.clone(),
            out: self.output.clone(),
            package_version: None,
            kernel_debs: self.kernel_debs.clone(),
            strategy: self.strategy,
            sign: self.sign_key.clone().zip(self.sign_cert.clone()),
            suites: nonempty(&self.suites),
            kernel_archive: self
                .kernel_archive
                .clone()
                .zip(self.kernel_keyring.clone())
                .map(|(url, keyring)| crate::kmod::vendor::KernelArchive {
                    url,
                    keyring,
                    suite: self
                        .kernel_suite
                        .clone()
                        .unwrap_or_else(|| self.release.clone()),
                    components: self.kernel_components.clone(),
                }),
        }
    }
}

impl BuildZfsArgs {
    pub fn spec(&self) -> crate::kmod::ZfsSpec {
        crate::kmod::ZfsSpec {
            base: self.build.spec(String::new(), self.sha256.clone()),
            zfs: self.zfs.clone(),
            zfs_source: self.zfs_source.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::FromArgMatches;

    use super::*;

    /// Every command, built (globals propagated), with its path below
    /// zchroot: ("", zchroot), ("target add", its command), ...
    fn all_commands() -> Vec<(String, clap::Command)> {
        fn walk(c: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
            for sc in c.get_subcommands().filter(|s| s.get_name() != "help") {
                let p = format!("{path} {}", sc.get_name()).trim().to_owned();
                out.push((p.clone(), sc.clone()));
                walk(sc, &p, out);
            }
        }
        let mut top = command();
        top.build();
        let mut out = vec![(String::new(), top.clone())];
        walk(&top, "", &mut out);
        out
    }

    /// An example's arguments: words, or `'...'` quoted; a comment or a
    /// redirection ends them.
    fn argv(example: &str) -> Vec<String> {
        let line = example.split(" #").next().unwrap();
        let line = line.split(" > ").next().unwrap();
        let mut words = Vec::new();
        for (i, part) in line.split('\'').enumerate() {
            if i % 2 == 1 {
                words.push(part.to_owned());
            } else {
                words.extend(part.split_whitespace().map(str::to_owned));
            }
        }
        words
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::from_arg_matches(&command().try_get_matches_from(args)?)
    }

    #[test]
    fn the_definitions_are_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_command_argument_and_option_says_what_it_is() {
        let mut missing = Vec::new();
        for (path, c) in all_commands() {
            for a in c.get_arguments().filter(|a| !a.is_hide_set()) {
                if a.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                    missing.push(format!("zchroot {path}: {}", a.get_id()));
                }
            }
            if !path.is_empty() && c.get_about().is_none() {
                missing.push(format!("zchroot {path} (the command)"));
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }

    #[test]
    fn commands_come_in_the_order_a_user_meets_them() {
        let names: Vec<String> = command()
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "create",
                "run",
                "shell",
                "list",
                "destroy",
                "build-zfs",
                "build-dkms",
                "target",
                "update",
                "repo",
                "export",
                "resolve",
                "doctor",
                "completions",
            ]
        );
    }

    #[test]
    fn each_help_ends_with_examples_that_parse() {
        for (path, mut c) in all_commands() {
            let ex = examples(&path);
            assert!(
                (1..=3).contains(&ex.len()),
                "zchroot {path}: {} examples",
                ex.len()
            );
            let help = c.render_long_help().to_string();
            let (_, tail) = help
                .rsplit_once("Examples:\n")
                .unwrap_or_else(|| panic!("zchroot {path}: no examples in\n{help}"));
            let shown: Vec<&str> = tail.lines().map(str::trim).collect();
            assert_eq!(shown, ex, "zchroot {path}: the help ends otherwise");
            for e in ex {
                let words = argv(e);
                let sub: Vec<String> = path.split_whitespace().map(str::to_owned).collect();
                assert!(
                    words[0] == "zchroot" && words[1..].starts_with(&sub),
                    "zchroot {path}: the example `{e}` is another command's"
                );
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                if let Err(err) = parse(&words) {
                    panic!("zchroot {path}: the example `{e}` does not parse:\n{err}");
                }
            }
        }
    }

    #[test]
    fn global_options_are_listed_once_and_accepted_after_any_command() {
        let help = command().render_long_help().to_string();
        for flag in ["--quiet", "--verbose", "--manifests"] {
            assert!(help.contains(flag), "zchroot --help lacks {flag}:\n{help}");
        }
        for (path, mut c) in all_commands().into_iter().skip(1) {
            let help = c.render_long_help().to_string();
            let (options, rest) = help
                .split_once("\nGlobal options: -q, -v, --manifests DIR (see 'zchroot --help')\n")
                .unwrap_or_else(|| {
                    panic!(
                        "zchroot {path} --help does not say where the global options are:\n{help}"
                    )
                });
            assert!(
                !options.contains("--verbose") && !options.contains("--manifests"),
                "zchroot {path} --help lists the global options:\n{help}"
            );
            assert!(rest.trim_start().starts_with("Examples:"), "{help}");
        }
        let cli = parse(&["zchroot", "target", "add", "rpi", "-q", "-v"]).unwrap();
        assert!(cli.quiet && cli.verbose);
        let cli = parse(&["zchroot", "list", "-v", "--manifests", "/m"]).unwrap();
        assert!(cli.verbose && !cli.quiet);
        assert_eq!(cli.manifests, Some(PathBuf::from("/m")));
        let cli = parse(&["zchroot", "--manifests", "/m", "-q", "list"]).unwrap();
        assert!(cli.quiet && cli.manifests.is_some());
    }

    #[test]
    fn the_release_is_release_and_the_architecture_arch() {
        let create = |args: &[&str]| match parse(args).map(|c| c.command) {
            Ok(Command::Create(a)) => Ok(a.spec().target),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        let spec = create(&[
            "zchroot",
            "create",
            "--arch",
            "armhf",
            "--release",
            "bookworm",
        ]);
        let spec = spec.unwrap();
        assert_eq!(
            (spec.arch.as_str(), spec.release.as_str()),
            ("armhf", "bookworm")
        );
        // The old spellings: a positional ARCH, --suite.
        let spec = create(&["zchroot", "create", "arm64", "--suite", "bookworm"]).unwrap();
        assert_eq!(
            (spec.arch.as_str(), spec.release.as_str()),
            ("arm64", "bookworm")
        );
        let e = create(&["zchroot", "create"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("--arch <ARCH>"), "{e}");
        assert!(
            e.to_string()
                .contains("Usage: zchroot create --arch <ARCH> [OPTIONS]"),
            "{e}"
        );
        let e = create(&["zchroot", "create", "arm64", "--arch", "armhf"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        match parse(&["zchroot", "resolve", "riscv64", "--suite", "trixie"])
            .unwrap()
            .command
        {
            Command::Resolve(a) => assert_eq!(a.target.arch(), "riscv64"),
            other => panic!("{other:?}"),
        }
        match parse(&["zchroot", "build-zfs", "--suite", "bookworm"])
            .unwrap()
            .command
        {
            Command::BuildZfs(a) => assert_eq!(a.build.release, "bookworm"),
            other => panic!("{other:?}"),
        }
        let c = parse(&["zchroot", "target", "add", "rpi", "--suite", "bookworm"]);
        match c.unwrap().command {
            Command::Target(TargetCommand::Add(a)) => assert_eq!(a.target().release, "bookworm"),
            other => panic!("{other:?}"),
        }
        // --suite is hidden: the help shows --release.
        for (path, mut c) in all_commands() {
            let help = c.render_long_help().to_string();
            assert!(!help.contains("--suite "), "zchroot {path}:\n{help}");
        }
    }
}
