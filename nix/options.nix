# The options of one gpubox image: nix2gpu's names, types and defaults wherever
# nix2gpu has the option, gpubox's own keys for the rest. Only declarations live
# here; `spec.nix` turns a configuration into the JSON spec `gpubox build` reads.
#
# Where gpubox's default differs from nix2gpu's on purpose (SSH without
# passwords, no fixed env/labels/tools), the README's migration table says so.
{ lib, name, ... }:
let
  inherit (lib) mkOption types;

  # The same words `gpubox build` takes; the spec checker has the final say.
  restartPolicy = types.enum [ "never" "on-failure" "always" ];
  seconds = types.either types.int types.float;
  # Arguments may be Nix paths (a script beside the flake), copied to the store.
  argument = types.coercedTo types.path (path: "${path}") types.str;

  # A local file: a Nix path (copied to the store at evaluation) or an
  # absolute path string. Relative strings are refused in spec.nix, since a
  # spec in the store has no folder of its own to resolve them against.
  localPath = types.either types.path types.str;

  copyEntry = types.submodule {
    options = {
      src = mkOption {
        type = localPath;
        description = "A file or folder to copy: a Nix path, a package or an absolute path.";
      };
      dst = mkOption {
        type = types.str;
        description = "Where it goes in the image (absolute).";
      };
      mode = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = ''Permission bits for everything copied, e.g. "0755".'';
      };
      uid = mkOption { type = types.nullOr types.int; default = null; description = "Owner of everything copied."; };
      gid = mkOption { type = types.nullOr types.int; default = null; description = "Group of everything copied."; };
    };
  };

  hostBinary = types.either types.str (types.submodule {
    options = {
      src = mkOption {
        type = localPath;
        description = "The executable: an absolute path, a Nix path or a command looked up on PATH when the image is copied.";
      };
      dst = mkOption { type = types.nullOr types.str; default = null; description = "Where it goes in the image."; };
    };
  });

  service = types.submodule ({ name, config, ... }: {
    options = {
      process.argv = mkOption {
        type = types.listOf argument;
        default = [ ];
        description = "nix2gpu's (NixOS modular services') spelling of `argv`.";
      };
      argv = mkOption {
        type = types.listOf argument;
        default = config.process.argv;
        defaultText = lib.literalExpression "process.argv";
        description = "The program and its arguments.";
      };
      env = mkOption { type = types.attrsOf types.str; default = { }; description = "Variables for this service only."; };
      workingDir = mkOption { type = types.nullOr types.str; default = null; description = "Its working folder."; };
      user = mkOption { type = types.nullOr types.str; default = null; description = "The account it runs as (root when unset)."; };
      restart = mkOption { type = restartPolicy; default = "on-failure"; description = "When it is started again."; };
      restartDelay = mkOption { type = seconds; default = 1; description = "Seconds between restarts."; };
      maxRestarts = mkOption { type = types.nullOr types.int; default = null; description = "Restarts before giving up (no limit when unset)."; };
      after = mkOption { type = types.listOf types.str; default = [ ]; description = "Services that must be ready first."; };
      readiness = mkOption {
        type = types.nullOr (types.submodule {
          options = {
            tcp = mkOption { type = types.nullOr types.port; default = null; description = "Ready once this port accepts connections."; };
            exec = mkOption { type = types.nullOr (types.listOf types.str); default = null; description = "Ready once this command succeeds."; };
            timeout = mkOption { type = seconds; default = 30; description = "Seconds to wait for readiness."; };
          };
        });
        default = null;
        description = "How gpubox-init knows the service is ready.";
      };
      logFile = mkOption { type = types.nullOr types.str; default = null; description = "Also write its output to this file."; };
    };
  });

  secret = types.submodule ({ name, ... }: {
    options = {
      file = mkOption { type = localPath; description = "The age-encrypted file."; };
      name = mkOption { type = types.str; default = name; description = "The secret's name (its file name under /run/agenix)."; };
      path = mkOption { type = types.nullOr types.str; default = null; description = "Where the plaintext appears at run time [default: /run/agenix/NAME]."; };
      mode = mkOption { type = types.str; default = "0400"; description = "Permission bits of the plaintext."; };
      owner = mkOption { type = types.nullOr types.str; default = null; description = "Its owner (root when unset)."; };
      group = mkOption { type = types.nullOr types.str; default = null; description = "Its group (the owner's when unset)."; };
      symlink = mkOption { type = types.bool; default = true; description = "Make `path` a link to the secret (else a copy)."; };
      optional = mkOption { type = types.bool; default = false; description = "Start anyway when it cannot be decrypted."; };
    };
  });

  account = types.submodule {
    options = {
      uid = mkOption { type = types.int; description = "The account's uid."; };
      gid = mkOption { type = types.nullOr types.int; default = null; description = "Its primary gid [default: uid]."; };
      group = mkOption { type = types.nullOr types.str; default = null; description = "Its primary group's name [default: the account's]."; };
      home = mkOption { type = types.nullOr types.str; default = null; description = "[default: /home/NAME]"; };
      shell = mkOption { type = types.nullOr types.str; default = null; description = "[default: /bin/sh]"; };
      groups = mkOption { type = types.listOf types.str; default = [ ]; description = "Supplementary groups."; };
    };
  };
in
{
  options = {
    name = mkOption {
      type = types.str;
      default = name;
      defaultText = lib.literalMD "the attribute name";
      description = "The image name.";
    };
    tag = mkOption { type = types.str; default = "latest"; description = "The image tag."; };

    fromImage = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = ''A base image: "oci:DIR[:TAG]", "oci-archive:FILE", "docker-archive:FILE" or "docker://HOST/REPO:TAG".'';
    };
    systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
      description = "Packages whose closures go into the image; their programs are linked in /usr/local/bin.";
    };
    platforms = mkOption {
      type = types.listOf (types.enum [ "linux/amd64" "linux/arm64" ]);
      default = [ ];
      description = "Build one image per platform and an index naming them [default: the build machine's platform]; aarch64 packages come from `platform.\"linux/arm64\".systemPackages` (e.g. `inputs.nixpkgs.legacyPackages.aarch64-linux.hello`).";
    };
    platform = mkOption {
      type = types.attrsOf (types.submodule {
        options.systemPackages = mkOption {
          type = types.listOf types.package;
          default = [ ];
          description = "This platform's packages, in place of the top-level `systemPackages`.";
        };
      });
      default = { };
      description = "Per-platform settings, by platform (`\"linux/arm64\"`), of the platforms in `platforms`.";
    };
    copyToRoot = mkOption {
      type = types.listOf (types.either types.package copyEntry);
      default = [ ];
      description = ''Packages whose trees are merged at `/` (their dependencies join the image), or `{ src, dst, mode, uid, gid }` entries.'';
    };
    extraCopyToRoot = mkOption {
      type = types.listOf (types.either types.package copyEntry);
      default = [ ];
      description = "Added to `copyToRoot`.";
    };
    hostBinaries = mkOption {
      type = types.listOf hostBinary;
      default = [ ];
      description = "Executables from the machine the image is copied on, with their loader and libraries.";
    };
    storePaths = mkOption {
      type = types.listOf types.package;
      default = [ ];
      description = "More store paths whose closures join the image, without links in /usr/local/bin.";
    };

    env = mkOption {
      type = types.attrsOf types.str;
      default = { PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"; };
      description = "The environment. Left undefined, gpubox's default PATH applies and a base image's PATH is kept.";
    };
    extraEnv = mkOption { type = types.attrsOf types.str; default = { }; description = "Added on top of `env`."; };
    labels = mkOption { type = types.attrsOf types.str; default = { }; description = "Image labels."; };
    extraLabels = mkOption { type = types.attrsOf types.str; default = { }; description = "Added on top of `labels`."; };
    exposedPorts = mkOption {
      type = types.either (types.attrsOf types.anything) (types.listOf types.str);
      default = { };
      description = ''Ports, nix2gpu's way (`{ "22/tcp" = { }; }`) or gpubox's (`[ "22/tcp" ]`); SSH's port is added when `ssh.enable`.'';
    };
    volumes = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = ''Folders in the container that are persistent volumes (the image config's `Volumes`), e.g. `[ "/workspace" ]`, where RunPod and vast.ai mount the user's data.'';
    };
    user = mkOption { type = types.str; default = "root"; description = "The account the main command runs as."; };
    workingDir = mkOption { type = types.str; default = "/root"; description = "The working folder [default: the base image's, else the home of a `user` other than root, else /root]."; };
    cmd = mkOption { type = types.listOf types.str; default = [ ]; description = "The main process, run by gpubox-init."; };
    entrypoint = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      description = "The entrypoint [default: gpubox-init].";
    };
    checkPrograms = mkOption {
      type = types.bool;
      default = true;
      description = "Check at build time that `cmd`, `entrypoint` and each service's program exist in the image and can start (false: they come from a volume at run time).";
    };
    maxLayers = mkOption { type = types.int; default = 50; description = "The most layers the image has (2 to 125)."; };
    created = mkOption {
      type = types.nullOr (types.either types.int types.str);
      default = null;
      description = "Creation time, RFC 3339 or Unix seconds [default: 1970-01-01T00:00:01Z; SOURCE_DATE_EPOCH wins].";
    };
    compression = mkOption { type = types.enum [ "gzip" "zstd" "none" ]; default = "gzip"; description = "How layers are compressed."; };

    cuda = {
      enable = mkOption { type = types.bool; default = true; description = "Make the image GPU-ready: NVIDIA variables, labels and library path."; };
      packages = mkOption {
        type = types.nullOr (types.lazyAttrsOf types.raw);
        default = null;
        description = "A CUDA package set (e.g. `pkgs.cudaPackages_12_4`): its toolkit libraries join the image and its version becomes `cuda.version`.";
      };
      version = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "MAJOR.MINOR [default: from `cuda.packages`, else detected in the closure].";
      };
      capabilities = mkOption { type = types.str; default = "compute,utility"; description = "NVIDIA_DRIVER_CAPABILITIES."; };
      allowMixedVersions = mkOption { type = types.bool; default = false; description = "Accept two CUDA releases in one closure."; };
    };

    registries = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = ''Where copyToRegistry, copyToGithub and `gpubox push` go: "ghcr.io/org" (the image's name and tag are added), or "docker://HOST/REPO[:TAG]".'';
    };

    users = mkOption { type = types.attrsOf account; default = { }; description = "Accounts in /etc/passwd, /etc/group and /etc/shadow."; };
    ssh = {
      enable = mkOption { type = types.bool; default = false; description = "Run sshd (keys only unless `passwordLogin`)."; };
      port = mkOption { type = types.port; default = 22; description = "sshd's port."; };
      authorizedKeys = mkOption { type = types.listOf types.str; default = [ ]; description = "Public keys allowed in (also SSH_PUBLIC_KEYS and PUBLIC_KEY at start)."; };
      hostKeyDir = mkOption { type = types.nullOr types.str; default = null; description = "Where host keys are kept [default: /etc/ssh/host-keys]."; };
      rsaHostKey = mkOption { type = types.bool; default = false; description = "Also make an RSA host key."; };
      passwordLogin = mkOption { type = types.bool; default = false; description = "Allow password and root password logins (ROOT_PASSWORD)."; };
    };
    sshdConfig = mkOption { type = types.nullOr types.str; default = null; description = "The whole sshd_config [default: gpubox's, keys only]."; };
    nixConfig = mkOption {
      type = types.nullOr (types.either types.str (types.attrsOf types.anything));
      default = null;
      description = "/etc/nix/nix.conf, as text or as settings.";
    };
    nix.enable = mkOption { type = types.bool; default = false; description = "Register the closure in the image's Nix database."; };
    extraStartupScript = mkOption {
      type = types.lines;
      default = "";
      description = "Shell text run before the services; definitions are concatenated.";
    };
    stopTimeout = mkOption { type = seconds; default = 10; description = "Seconds services get after SIGTERM."; };

    services = mkOption { type = types.attrsOf service; default = { }; description = "Processes gpubox-init supervises."; };
    nimiSettings = mkOption {
      type = types.deferredModule;
      default = { };
      description = "nix2gpu's settings for nimi, which gpubox does not run: a definition is reported and left out; use each service's `restart`, `restartDelay` and `maxRestarts`.";
    };

    age = {
      enable = mkOption { type = types.bool; default = false; description = "Decrypt `age.secrets` at start."; };
      package = mkOption {
        type = types.nullOr types.package;
        default = null;
        description = "nix2gpu's age program; gpubox-init decrypts by itself, so a definition is reported and left out.";
      };
      identityPaths = mkOption {
        type = types.nullOr (types.listOf types.str);
        default = null;
        description = "Private keys to decrypt with [default: the SSH host keys].";
      };
      secrets = mkOption { type = types.attrsOf secret; default = { }; description = "The secrets."; };
      secretsDir = mkOption { type = types.nullOr types.str; default = null; description = "nix2gpu's; gpubox uses /run/agenix (a definition is reported and left out)."; };
      secretsMountPoint = mkOption { type = types.nullOr types.str; default = null; description = "nix2gpu's; gpubox uses /run/agenix.d (a definition is reported and left out)."; };
    };

    tailscale = {
      enable = mkOption { type = types.bool; default = false; description = "Run tailscaled in userspace mode and `tailscale up`."; };
      authKey = mkOption { type = types.str; default = ""; description = "nix2gpu's name for `authKeyFile` (empty: unset)."; };
      authKeyFile = mkOption { type = types.nullOr types.str; default = null; description = "A file in the container holding the auth key (else TAILSCALE_AUTHKEY)."; };
      hostname = mkOption { type = types.nullOr types.str; default = null; description = "The node's name."; };
      stateDir = mkOption { type = types.nullOr types.str; default = null; description = "[default: /var/lib/tailscale]"; };
      extraUpFlags = mkOption { type = types.listOf types.str; default = [ ]; description = "More `tailscale up` flags."; };
      extraDaemonFlags = mkOption { type = types.listOf types.str; default = [ ]; description = "More tailscaled flags."; };
    };

    home = mkOption {
      type = types.nullOr types.raw;
      default = null;
      description = "A home-manager configuration or its activation package, activated at start as `user`.";
    };

    meta = mkOption { type = types.lazyAttrsOf types.raw; default = { }; description = "Added to the image's `meta`."; };
    passthru = mkOption { type = types.lazyAttrsOf types.raw; default = { }; description = "Added to the image's attributes."; };
  };
}
