//! `gpubox`, the command line: builds GPU-ready OCI images from Nix closures and
//! local files, and inspects images wherever they are.
//!
//! It parses arguments and renders: progress, reports and error diagnostics.
//! The build itself is `gpubox-build`'s (spec -> closure -> layers -> image ->
//! output); the host checks and GPU flags are `gpubox-host`'s.

mod commands;
mod error;
mod interrupt;
mod progress;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gpubox_build::image_commands::ImageCommand;
use gpubox_build::open::RegistryAccess;
use gpubox_build::{BuildRequest, ImageLocation, Reporter};

use crate::error::CliError;
use crate::progress::Progress;

#[derive(Parser)]
#[command(
    name = "gpubox",
    version = env!("GPUBOX_LONG_VERSION"),
    about = "Build GPU-ready OCI images from Nix closures and local files, without a daemon"
)]
struct Cli {
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

// One value, parsed once per run: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Build the image a spec describes and write it to DEST.
    Build {
        /// The spec, TOML or JSON.
        #[arg(default_value = "gpubox.toml")]
        spec: PathBuf,
        /// Where the image goes: oci:DIR[:TAG], oci-archive:FILE[:NAME:TAG],
        /// docker-archive:FILE, docker-daemon:NAME[:TAG], podman:NAME[:TAG] or
        /// docker://HOST[:PORT]/REPO[:TAG] (a registry; the tag defaults to the
        /// spec's). Missing folders are created.
        #[arg(short, long, value_name = "DEST")]
        output: String,
        /// Write the image's manifest digest to FILE.
        #[arg(long, value_name = "FILE")]
        digestfile: Option<PathBuf>,
        /// Where built layers are kept for the next build [default:
        /// $GPUBOX_CACHE_DIR, $XDG_CACHE_HOME/gpubox or ~/.cache/gpubox].
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        /// Also write an SPDX 2.3 JSON software bill of materials to FILE.
        #[arg(long, value_name = "FILE")]
        sbom: Option<PathBuf>,
        /// Reuse the layers of this registry image, on the registry DEST names,
        /// that this build would make the same (as it always does those of the
        /// image DEST holds now); repeatable.
        #[arg(long, value_name = "docker://HOST/REPO:TAG")]
        cache_from: Vec<String>,
        /// A Nix binary cache (file://, https://, s3://) that store paths this
        /// machine lacks are read from: their closure and listings from its
        /// metadata, their files copied in only for layers built here.
        #[arg(long, value_name = "URL")]
        substituter: Option<String>,
        /// Build for this platform (linux/amd64, linux/arm64) in place of the
        /// spec's `platforms`; repeatable. Two or more make an image index.
        #[arg(long, value_name = "OS/ARCH")]
        platform: Vec<gpubox_spec::Platform>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Push an image to a registry, sending only the blobs it lacks.
    Push {
        /// Any source `gpubox inspect` takes.
        source: String,
        /// docker://HOST[:PORT]/REPO[:TAG] [default: every entry of the spec's
        /// `registries`].
        dest: Option<String>,
        /// The spec whose `registries` are the destinations when DEST is not
        /// given.
        #[arg(long, value_name = "FILE", default_value = "gpubox.toml")]
        spec: PathBuf,
        /// Also push FILE (SPDX JSON) as an OCI referrer of the image.
        #[arg(long, value_name = "FILE")]
        sbom: Option<PathBuf>,
        /// Write the pushed manifest's digest to FILE.
        #[arg(long, value_name = "FILE")]
        digestfile: Option<PathBuf>,
        /// The layer cache the image was built with, whose compressed layers and
        /// manifest an engine's image (podman:, docker-daemon:) goes up with
        /// [default: as for `gpubox build`].
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Show or shrink the cache of built layers.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Host-side GPU support: Container Device Interface specs.
    Cdi {
        #[command(subcommand)]
        command: CdiCommand,
    },
    /// Show which layers two images share and what changed in the others:
    /// store paths and files added, removed or changed, and config fields.
    Diff {
        /// The old image: any source `gpubox inspect` takes.
        a: String,
        /// The new image: any source `gpubox inspect` takes.
        b: String,
        /// Print JSON instead of a report.
        #[arg(long)]
        json: bool,
        /// Of two multi-platform indexes, compare only this platform's images
        /// [default: every platform both hold].
        #[arg(long, value_name = "OS/ARCH")]
        platform: Option<gpubox_spec::Platform>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Check that this host can run GPU containers, and say how to fix what
    /// cannot; with IMAGE, also whether the driver can run that image's CUDA.
    /// With --k8s, check a Kubernetes manifest against the image (its start-up
    /// plan, or --spec) instead.
    Doctor {
        /// An image to check: NAME:TAG in podman or docker, or any source
        /// `gpubox inspect` takes. With --k8s: the registry image to compare the
        /// manifest with [default: the one the manifest names].
        image: Option<String>,
        /// Print JSON instead of a report.
        #[arg(long)]
        json: bool,
        /// Check this Kubernetes manifest (e.g. from `gpubox deploy kubernetes`):
        /// the image's digest, ports, the variables the init reads, the grace
        /// period, GPUs, volumes, probes and architecture.
        #[arg(long, value_name = "MANIFEST")]
        k8s: Option<PathBuf>,
        /// With --k8s: check against the spec the image was built from [default:
        /// the start-up plan in the image, read from its last layer].
        #[arg(long, value_name = "FILE", requires = "k8s")]
        spec: Option<PathBuf>,
        #[command(flatten)]
        host: HostArgs,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Write what runs a pushed image on Kubernetes, vast.ai or RunPod, from what
    /// the spec knows (ports, keys and secrets, volumes, readiness, stop timeout,
    /// CUDA). It is written, never applied.
    Deploy {
        /// kubernetes (or k8s): Deployment, Service, Secret and volume claims as
        /// YAML; vast: a vast.ai template (JSON); runpod: a RunPod template (JSON).
        target: String,
        /// The spec the image was built from.
        #[arg(default_value = "gpubox.toml")]
        spec: PathBuf,
        /// The pushed image: HOST/REPO:TAG, resolved to its digest at the registry,
        /// or HOST/REPO[:TAG]@sha256:..., used as written.
        #[arg(long, value_name = "REF")]
        image: String,
        /// How many GPUs (0: none).
        #[arg(long, default_value_t = 1, value_name = "N")]
        gpus: u32,
        /// Write to FILE (whole or not at all; mode 0600 when it holds keys)
        /// [default: standard output, also for `-`].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Name the objects or template NAME [default: the spec's name].
        #[arg(long)]
        name: Option<String>,
        /// Authorized SSH keys for SSH_PUBLIC_KEYS: a FILE, or env:NAME.
        #[arg(long, value_name = "SOURCE")]
        ssh_keys: Option<gpubox_deploy::SecretSource>,
        /// The age identity for AGE_IDENTITY: a FILE, or env:NAME.
        #[arg(long, value_name = "SOURCE")]
        age_identity: Option<gpubox_deploy::SecretSource>,
        /// tailscale's auth key for TAILSCALE_AUTHKEY: a FILE, or env:NAME.
        #[arg(long, value_name = "SOURCE")]
        tailscale_authkey: Option<gpubox_deploy::SecretSource>,
        /// Kubernetes: the workload's kind.
        #[arg(long, value_enum, default_value = "deployment")]
        kind: KindArg,
        /// Kubernetes: GPUs from NVIDIA's device plugin (nvidia.com/gpu) or from
        /// DRA (a resource.k8s.io/v1 ResourceClaimTemplate, class gpu.nvidia.com).
        #[arg(long, value_enum, default_value = "device-plugin")]
        gpu_api: GpuApiArg,
        /// Kubernetes: the pod's runtimeClassName (e.g. nvidia) [default: none].
        #[arg(long, value_name = "NAME")]
        runtime_class: Option<String>,
        /// Kubernetes: the objects' namespace [default: kubectl's].
        #[arg(long)]
        namespace: Option<String>,
        /// Kubernetes: the container's CPU request (e.g. 4, 500m).
        #[arg(long, value_name = "QUANTITY")]
        cpu: Option<String>,
        /// Kubernetes: the container's memory request and limit (e.g. 32Gi).
        #[arg(long, value_name = "QUANTITY")]
        memory: Option<String>,
        /// Kubernetes: the volume claims' storage class [default: the cluster's].
        #[arg(long, value_name = "NAME")]
        storage_class: Option<String>,
        /// Kubernetes: the Service's type.
        #[arg(long, value_enum, default_value = "cluster-ip")]
        service_type: ServiceTypeArg,
        /// kubernetes, runpod: the storage of each folder in the image's `volumes`,
        /// in GiB [default: 20].
        #[arg(long, value_name = "GB")]
        volume_gb: Option<u64>,
        /// Kubernetes: how long the startup probe lets the container start, in
        /// seconds [default: the services' and tailscaled's readiness timeouts,
        /// plus 60].
        #[arg(long, value_name = "SECONDS")]
        startup_seconds: Option<u64>,
        /// Kubernetes: a memory-backed /dev/shm of this size (e.g. 16Gi), for
        /// data loaders that share tensors through it.
        #[arg(long, value_name = "QUANTITY")]
        shm_size: Option<String>,
        /// kubernetes: the imagePullSecrets Secret; runpod: the
        /// containerRegistryAuthId, for a private registry.
        #[arg(long, value_name = "NAME")]
        pull_secret: Option<String>,
        /// vast, runpod: the disk in GB [default: 1.5 x the unpacked image, at
        /// least 10].
        #[arg(long, value_name = "GB")]
        disk_gb: Option<u64>,
        /// runpod: serve this port as raw TCP, not through RunPod's HTTP proxy
        /// (the SSH port always is); repeatable.
        #[arg(long, value_name = "PORT")]
        tcp_port: Vec<u16>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Start an image with the host's GPUs, choosing the flags that work here;
    /// an image that asks for no GPU (or --no-gpu) runs without one.
    Run {
        /// NAME[:TAG] in podman or docker (`podman:NAME` or `docker-daemon:NAME`
        /// to pick the engine).
        image: String,
        /// The command to run instead of the image's, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
        /// The engine's network; with `none` no ports are published.
        #[arg(long)]
        network: Option<String>,
        /// Mount HOST:CONTAINER[:OPTIONS] (repeatable), as the engine's --volume.
        #[arg(short, long, value_name = "HOST:CONTAINER")]
        volume: Vec<String>,
        /// Set NAME=VALUE, or pass NAME from here (repeatable), as the engine's --env.
        #[arg(short, long, value_name = "NAME[=VALUE]")]
        env: Vec<String>,
        /// The container's name.
        #[arg(long)]
        name: Option<String>,
        /// Run in the background and print the container's id.
        #[arg(short, long)]
        detach: bool,
        /// One more argument for the engine's `run`, before the image (repeatable),
        /// e.g. --engine-arg=--shm-size=8g.
        #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
        engine_arg: Vec<String>,
        /// The working folder inside the container.
        #[arg(short, long, value_name = "DIR")]
        workdir: Option<String>,
        /// Run without a GPU even when the image asks for one.
        #[arg(long)]
        no_gpu: bool,
        /// Print the engine command instead of running it (also where no GPU is).
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        host: HostArgs,
    },
    /// The Nix front end: the builders its derivations run, and the image
    /// commands behind `nix run .#IMAGE.COMMAND` (see the README's "From Nix").
    Nix {
        #[command(subcommand)]
        command: NixCommand,
    },
    /// Write a commented starter spec (gpubox.toml) into DIR, and with --nix a
    /// starter flake; never over a file that is there.
    Init {
        /// The folder [default: the current one]; created when missing.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Also write flake.nix, for the Nix front end (see the README's "From Nix").
        #[arg(long)]
        nix: bool,
    },
    /// Print the shell completion script for SHELL, e.g.
    /// `gpubox completions bash > /etc/bash_completion.d/gpubox`.
    Completions { shell: clap_complete::Shell },
    /// Print the man page gpubox(1), or with --dir write one page per command.
    Man {
        /// Write gpubox.1, gpubox-build.1, ... into DIR instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Show an image's config, environment and layers.
    Inspect {
        /// oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE,
        /// docker-daemon:NAME:TAG, podman:NAME:TAG or
        /// docker://HOST[:PORT]/REPO[:TAG|@DIGEST] (its manifest and config only;
        /// layers gpubox built are described by their annotations).
        source: String,
        /// Print JSON instead of a report.
        #[arg(long)]
        json: bool,
        /// Read every layer (downloading a registry image's) instead of trusting
        /// the annotations gpubox writes on its layers.
        #[arg(long)]
        layers: bool,
        /// Of a multi-platform index, show only this platform's image
        /// (linux/amd64, linux/arm64) [default: every platform's].
        #[arg(long, value_name = "OS/ARCH")]
        platform: Option<gpubox_spec::Platform>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

#[derive(Subcommand)]
enum NixCommand {
    /// The builder of an image's derivation: checks the spec Nix evaluated
    /// against the closure Nix exported and writes it as the output.
    SpecBuilder,
    /// The builder of an image command's derivation: writes the script that
    /// `nix run .#IMAGE.COMMAND` starts.
    CommandBuilder,
    /// Run an image command (nix2gpu's names) for a spec; ARGS go to the
    /// gpubox command it stands for (`copyTo` takes DEST first; shells take
    /// `gpubox run` options, then `--` and a command).
    Run {
        #[arg(value_parser = commands::nix::image_command_parser())]
        command: ImageCommand,
        /// The spec (JSON from `nix build`, or any gpubox spec).
        spec: PathBuf,
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum CdiCommand {
    /// Write a CDI spec (kind nvidia.com/gpu) for the installed NVIDIA driver.
    Generate {
        #[command(flatten)]
        host: HostArgs,
        /// json or yaml [default: from the output's extension, else yaml].
        #[arg(long)]
        format: Option<SpecFormatArg>,
        /// Where to write it, e.g. /etc/cdi/nvidia.yaml [default: standard output].
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Show how many layers and blobs the cache holds, and their size.
    Info {
        /// Print JSON instead of a report.
        #[arg(long)]
        json: bool,
        /// The cache [default: as for `gpubox build`].
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Remove broken entries, unfinished files and blobs no layer entry uses;
    /// waits for running builds, and builds started meanwhile wait for it.
    Gc {
        /// Then remove the least recently used layers and pulled images until the cache is at
        /// most this big: bytes, or a number with K, M, G or T (e.g. 10G).
        #[arg(long, value_name = "SIZE", value_parser = commands::cache::parse_size)]
        max_size: Option<u64>,
        /// Also print what was removed and what is left as JSON.
        #[arg(long)]
        json: bool,
        /// The cache [default: as for `gpubox build`].
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KindArg {
    Deployment,
    Statefulset,
    Job,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum GpuApiArg {
    DevicePlugin,
    Dra,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ServiceTypeArg {
    ClusterIp,
    NodePort,
    LoadBalancer,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SpecFormatArg {
    Json,
    Yaml,
}

/// How to reach a registry, named as skopeo names them.
#[derive(clap::Args)]
struct RegistryArgs {
    /// Require HTTPS with verified certificates; `--tls-verify=false` allows
    /// plain HTTP and any certificate (local registries).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    tls_verify: bool,
    /// Trust the CA certificates `DIR/*.crt` for the registry [default:
    /// /etc/containers/certs.d/HOST[:PORT] and /etc/docker/certs.d/HOST[:PORT]].
    #[arg(long, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// USER:PASS for the registry [default: from $REGISTRY_AUTH_FILE,
    /// $XDG_RUNTIME_DIR/containers/auth.json, $DOCKER_CONFIG/config.json or
    /// ~/.docker/config.json: the registry's `credHelpers` entry, its `auths`
    /// entry, then the file's `credsStore`].
    #[arg(
        long,
        value_name = "USER:PASS",
        env = "GPUBOX_REGISTRY_CREDS",
        hide_env_values = true
    )]
    creds: Option<String>,
    /// Read USER:PASS from the first line of standard input, so the password
    /// never appears in the process list or the shell history.
    #[arg(long, conflicts_with = "creds")]
    creds_stdin: bool,
}

impl RegistryArgs {
    /// The first of these options given a value other than its default.
    fn given(&self) -> Option<&'static str> {
        [
            ("--tls-verify", !self.tls_verify),
            ("--cert-dir", self.cert_dir.is_some()),
            ("--creds", self.creds.is_some()),
            ("--creds-stdin", self.creds_stdin),
        ]
        .into_iter()
        .find(|(_, given)| *given)
        .map(|(option, _)| option)
    }

    fn options(&self) -> Result<gpubox_registry::PushOptions, CliError> {
        let creds = if self.creds_stdin {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(CliError::CredsStdin)?;
            Some(line.trim_end_matches(['\r', '\n']).to_owned())
        } else {
            self.creds.clone()
        };
        Ok(gpubox_registry::PushOptions {
            tls_verify: self.tls_verify,
            cert_dir: self.cert_dir.clone(),
            credentials: creds.as_deref().map(str::parse).transpose()?,
            auth_files: gpubox_registry::default_auth_files(),
            // Without a cache folder, pushes simply mount nothing.
            blob_record: gpubox_build::cache_dir(None)
                .ok()
                .map(|dir| dir.join("registry-blobs.json")),
        })
    }

    /// Runs `read` with what reading images from registries needs: these
    /// options and the layer cache, which keeps what is pulled.
    fn read_with(
        &self,
        reporter: &dyn Reporter,
        read: impl FnOnce(&RegistryAccess) -> Result<(), CliError>,
    ) -> Result<(), CliError> {
        let (options, cache_root) = (self.options()?, gpubox_build::cache_dir(None)?);
        read(&RegistryAccess {
            options: &options,
            cache_root: &cache_root,
            reporter,
        })
    }
}

/// Where the host's driver files are.
#[derive(clap::Args)]
struct HostArgs {
    /// Root of the driver's files (libraries, binaries, firmware); its
    /// proc/driver/nvidia is used when it has one, else /proc.
    #[arg(long, default_value = "/", value_name = "DIR")]
    driver_root: PathBuf,
    /// Root under which dev/nvidia* are found.
    #[arg(long, default_value = "/", value_name = "DIR")]
    dev_root: PathBuf,
    /// Root under which etc/cdi and var/run/cdi are read (doctor, run).
    #[arg(long, default_value = "/", value_name = "DIR", hide = true)]
    cdi_root: PathBuf,
}

impl HostArgs {
    /// The first of these options given a value other than its default.
    fn given(&self) -> Option<&'static str> {
        let root = Path::new("/");
        [
            ("--driver-root", &self.driver_root),
            ("--dev-root", &self.dev_root),
            ("--cdi-root", &self.cdi_root),
        ]
        .into_iter()
        .find(|(_, value)| value.as_path() != root)
        .map(|(option, _)| option)
    }

    fn roots(&self) -> gpubox_cdi::HostRoots {
        let proc_root = if self.driver_root.join("proc/driver/nvidia").is_dir() {
            self.driver_root.clone()
        } else {
            PathBuf::from("/")
        };
        gpubox_cdi::HostRoots {
            driver_root: self.driver_root.clone(),
            dev_root: self.dev_root.clone(),
            proc_root,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Lines wrap between words only, never inside a path or a hyphenated name, so a
    // path in a message can be copied whole.
    let _ = miette::set_hook(Box::new(|_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .break_words(false)
                .word_separator(textwrap::WordSeparator::AsciiSpace)
                .word_splitter(textwrap::WordSplitter::NoHyphenation)
                .build(),
        )
    }));
    match run(cli) {
        Ok(code) => code,
        // A reader that stopped early (`gpubox man | head`) is no failure to report.
        Err(CliError::Stdout(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{:?}", miette::Report::new(error));
            ExitCode::FAILURE
        }
    }
}

/// `--cache-from` names registry images, for a build whose output is a registry.
fn check_cache_from(cache_from: &[String], output: &ImageLocation) -> Result<(), CliError> {
    for reference in cache_from {
        let reason = if !matches!(
            reference.parse::<ImageLocation>(),
            Ok(ImageLocation::Registry { .. })
        ) {
            "not a registry image"
        } else if !matches!(output, ImageLocation::Registry { .. }) {
            "layers are reused only by a build whose output is a registry (-o docker://...)"
        } else {
            continue;
        };
        return Err(CliError::CacheFrom {
            reference: reference.clone(),
            reason,
        });
    }
    Ok(())
}

/// Writes the image's digest where the user asked: `--digestfile`, and
/// standard output unless `--quiet`.
fn report_digest(digest: &str, digestfile: Option<&PathBuf>, quiet: bool) -> Result<(), CliError> {
    if let Some(file) = digestfile {
        gpubox_build::push::write_digest_file(file, digest)?;
    }
    if !quiet {
        println!("{digest}");
    }
    Ok(())
}

/// `--platform` values in the order given, each once.
fn dedup_platforms(platforms: Vec<gpubox_spec::Platform>) -> Vec<gpubox_spec::Platform> {
    let mut unique = Vec::with_capacity(platforms.len());
    for platform in platforms {
        if !unique.contains(&platform) {
            unique.push(platform);
        }
    }
    unique
}

fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let progress = Progress::new(cli.quiet);
    match cli.command {
        Command::Build {
            spec,
            output,
            digestfile,
            cache_dir,
            sbom,
            cache_from,
            substituter,
            platform,
            registry,
        } => {
            let spec = gpubox_spec::load(&spec)?;
            let output = output.parse::<ImageLocation>()?;
            check_cache_from(&cache_from, &output)?;
            let request = BuildRequest {
                output,
                cache_root: gpubox_build::cache_dir(cache_dir.as_deref())?,
                sbom,
                registry: registry.options()?,
                source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
                cache_from,
                substituter,
                platforms: dedup_platforms(platform),
            };
            interrupt::remove_partials_on_signal(request.unfinished_folders())
                .map_err(CliError::Signals)?;
            let built = gpubox_build::build(&spec, &request, &progress)?;
            report_digest(&built.manifest_digest, digestfile.as_ref(), cli.quiet)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Push {
            source,
            dest,
            spec,
            sbom,
            digestfile,
            cache_dir,
            registry,
        } => {
            let request = gpubox_build::push::PushRequest {
                source: ImageLocation::parse_or_local(&source)?,
                references: gpubox_build::push::destinations(dest.as_deref(), &spec)?,
                sbom,
                options: registry.options()?,
            };
            // Without a cache folder, an engine's image goes up as exported.
            let cache_root = match cache_dir {
                Some(dir) => Some(dir),
                None => gpubox_build::cache_dir(None).ok(),
            };
            let digest = gpubox_build::push::run(&request, cache_root.as_deref(), &progress)?;
            report_digest(&digest, digestfile.as_ref(), cli.quiet)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cache {
            command: CacheCommand::Info { json, cache_dir },
        } => {
            commands::cache::info(cache_dir.as_deref(), json, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cache {
            command:
                CacheCommand::Gc {
                    max_size,
                    json,
                    cache_dir,
                },
        } => {
            commands::cache::gc(
                cache_dir.as_deref(),
                max_size,
                json,
                &progress,
                &mut std::io::stdout().lock(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff {
            a,
            b,
            json,
            platform,
            registry,
        } => {
            registry.read_with(&progress, |source| {
                let (a, b) = (
                    ImageLocation::parse_or_local(&a)?,
                    ImageLocation::parse_or_local(&b)?,
                );
                commands::diff::run(
                    &a,
                    &b,
                    source,
                    json,
                    platform,
                    &mut std::io::stdout().lock(),
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect {
            source,
            json,
            layers,
            platform,
            registry,
        } => {
            registry.read_with(&progress, |registry| {
                let source = ImageLocation::parse_or_local(&source)?;
                commands::inspect::run(
                    &source,
                    registry,
                    commands::inspect::Shown {
                        as_json: json,
                        read_layers: layers,
                        platform,
                    },
                    &mut std::io::stdout().lock(),
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Init { dir, nix } => {
            for file in commands::init::run(&dir, nix)? {
                progress.step(&format!("wrote {}", file.display()));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            commands::docs::completions::<Cli>(shell, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            commands::docs::man::<Cli>(dir.as_deref(), &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cdi {
            command:
                CdiCommand::Generate {
                    host,
                    format,
                    output,
                },
        } => {
            let request = commands::cdi::GenerateRequest {
                roots: host.roots(),
                format: format.map(|f| match f {
                    SpecFormatArg::Json => gpubox_cdi::SpecFormat::Json,
                    SpecFormatArg::Yaml => gpubox_cdi::SpecFormat::Yaml,
                }),
                output,
            };
            commands::cdi::generate(&request, &progress)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Nix {
            command: NixCommand::SpecBuilder,
        } => Ok(commands::nix::spec_builder(&progress)),
        Command::Nix {
            command: NixCommand::CommandBuilder,
        } => {
            gpubox_build::nix_builder::command_builder()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Nix {
            command:
                NixCommand::Run {
                    command,
                    spec,
                    args,
                },
        } => commands::nix::run_image_command(command, &spec, &args, &progress, |line| {
            let quiet = cli.quiet.then(|| "--quiet".to_owned());
            let argv = ["gpubox".to_owned()].into_iter().chain(quiet).chain(line);
            run(Cli::try_parse_from(argv).unwrap_or_else(|error| error.exit()))
        }),
        Command::Doctor {
            image,
            json,
            k8s: Some(manifest),
            spec,
            host,
            registry,
        } => {
            if let Some(option) = host.given() {
                return Err(CliError::DoctorOption {
                    option,
                    mode: "--k8s checks a manifest, not this host",
                });
            }
            let mut healthy = false;
            registry.read_with(&progress, |registry| {
                healthy = commands::deploy::check_manifest(
                    &commands::deploy::ManifestCheck {
                        manifest: &manifest,
                        spec: spec.as_deref(),
                        image: image.as_deref(),
                        as_json: json,
                    },
                    registry,
                    &mut std::io::stdout().lock(),
                )?;
                Ok(())
            })?;
            Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Deploy {
            target,
            spec,
            image,
            gpus,
            output,
            name,
            ssh_keys,
            age_identity,
            tailscale_authkey,
            kind,
            gpu_api,
            runtime_class,
            namespace,
            cpu,
            memory,
            storage_class,
            service_type,
            volume_gb,
            startup_seconds,
            shm_size,
            pull_secret,
            disk_gb,
            tcp_port,
            registry,
        } => {
            let request = commands::deploy::DeployRequest {
                target: &target,
                spec: &spec,
                image: &image,
                name: name.as_deref(),
                output: output.as_deref(),
                secrets: gpubox_deploy::SecretSources {
                    ssh_keys,
                    age_identity,
                    tailscale_authkey,
                },
                options: gpubox_deploy::Options {
                    gpus,
                    disk_gb,
                    volume_gb,
                    tcp_ports: tcp_port,
                    kind: match kind {
                        KindArg::Deployment => gpubox_deploy::WorkloadKind::Deployment,
                        KindArg::Statefulset => gpubox_deploy::WorkloadKind::StatefulSet,
                        KindArg::Job => gpubox_deploy::WorkloadKind::Job,
                    },
                    gpu_api: match gpu_api {
                        GpuApiArg::DevicePlugin => gpubox_deploy::GpuApi::DevicePlugin,
                        GpuApiArg::Dra => gpubox_deploy::GpuApi::Dra,
                    },
                    runtime_class,
                    namespace,
                    cpu,
                    memory,
                    storage_class,
                    service_type: match service_type {
                        ServiceTypeArg::ClusterIp => gpubox_deploy::ServiceType::ClusterIp,
                        ServiceTypeArg::NodePort => gpubox_deploy::ServiceType::NodePort,
                        ServiceTypeArg::LoadBalancer => gpubox_deploy::ServiceType::LoadBalancer,
                    },
                    startup_seconds,
                    shm_size,
                    pull_secret,
                },
            };
            registry.read_with(&progress, |registry| {
                commands::deploy::deploy(&request, registry)
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor {
            image,
            json,
            host,
            registry,
            ..
        } => {
            if let Some(option) = registry.given() {
                return Err(CliError::DoctorOption {
                    option,
                    mode: "without --k8s, doctor reads images from podman, Docker or files",
                });
            }
            let request = gpubox_host::doctor::DoctorRequest {
                roots: host.roots(),
                cdi_root: host.cdi_root.clone(),
                image: image
                    .map(|i| ImageLocation::parse_or_local(&i))
                    .transpose()?,
            };
            let checks = gpubox_host::doctor::checks(&request)?;
            commands::doctor::report(&checks, json, &mut std::io::stdout().lock())
                .map_err(CliError::Stdout)?;
            Ok(if gpubox_host::doctor::healthy(&checks) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Run {
            image,
            command,
            network,
            volume,
            env,
            name,
            detach,
            engine_arg,
            workdir,
            no_gpu,
            dry_run,
            host,
        } => {
            let plan = gpubox_host::run::command(&gpubox_host::run::RunRequest {
                image,
                command,
                network,
                volumes: volume,
                env,
                name,
                detach,
                engine_args: engine_arg,
                workdir,
                no_gpu,
                dry_run,
                roots: host.roots(),
                cdi_root: host.cdi_root.clone(),
                interactive: std::io::IsTerminal::is_terminal(&std::io::stdin()),
            })?;
            if let Some(why) = &plan.without_gpu {
                progress.step(&format!("running without a GPU: {why}"));
            }
            let engine_command = plan.command;
            if dry_run {
                println!("{engine_command}");
                return Ok(ExitCode::SUCCESS);
            }
            // Replaces this process, so the engine owns the terminal and the exit code.
            let error = std::os::unix::process::CommandExt::exec(
                std::process::Command::new(engine_command.engine.program())
                    .args(&engine_command.args),
            );
            Err(gpubox_engines::EngineError::Spawn {
                command: engine_command.to_string(),
                source: error,
            }
            .into())
        }
    }
}
