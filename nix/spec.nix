# Turns an evaluated image configuration into gpubox's spec, as a Nix value
# ready for JSON: keys as `gpubox build` reads them, store paths as strings whose
# context makes the spec derivation depend on them.
#
# Which store paths the image holds: every store path the spec names, anywhere
# (a package in `systemPackages`, `"${pkgs.redis}/bin/redis-server"` in a
# service's argv, a path in `env`), so the spec's references are the image's
# store paths. The exceptions are the sources gpubox copies out of the store into
# other places: `copyToRoot` (its tree goes to `/`, its dependencies join the
# image, as nix2container does), `hostBinaries` and the age ciphertext (which goes
# to /etc/gpubox/secrets). Those are listed in `storePaths` only when named
# elsewhere too.
{ lib }:
let
  inherit (builtins) getContext appendContext unsafeDiscardStringContext;

  # A store path in a string: /nix/store/HASH-NAME, up to the next `/` or a
  # character store names cannot hold.
  storePathPattern = "(${builtins.storeDir}/[0-9a-df-np-sv-z]{32}-[-+._?=0-9a-zA-Z]+)";

  # The store paths a string names, each carrying the string's context so the
  # derivation that lists it depends on what produces it. A string without
  # context names no path the build can have (a hard-coded store path is the
  # user's to provide), so it contributes none.
  storePathsInString = text:
    let
      context = getContext text;
      found = lib.filter lib.isList (builtins.split storePathPattern (unsafeDiscardStringContext text));
    in
    if context == { } then [ ] else map (match: appendContext (lib.head match) context) found;

  # Every store path named anywhere inside a JSON-ready value.
  storePathsIn = value:
    if lib.isString value then storePathsInString value
    else if lib.isList value then lib.concatMap storePathsIn value
    else if lib.isAttrs value then lib.concatMap storePathsIn (lib.attrValues value)
    else [ ];

  # Unique by path, sorted, keeping one context-carrying string for each.
  uniquePaths = paths:
    let byPath = lib.listToAttrs (map (path: lib.nameValuePair (unsafeDiscardStringContext path) path) paths);
    in map (path: byPath.${path}) (lib.sort lib.lessThan (lib.attrNames byPath));

  # A local file for the spec: a Nix path is copied to the store now; a string
  # must already be absolute, since a spec in the store has no folder to
  # resolve a relative one against. A Nix path that does not exist is passed
  # on as it is, so the builder's check names the key and the missing file.
  localFile = option: value:
    if lib.isPath value then (if builtins.pathExists value then "${value}" else toString value)
    else if lib.hasPrefix "/" value then value
    else throw "gpubox: `${option}` is the relative path \"${value}\"; write it as a Nix path (./${lib.removePrefix "./" value}) or an absolute path";

  # Nulls are dropped: in a gpubox spec an absent key and `null` mean the same,
  # and a smaller spec is easier to read.
  compact = lib.filterAttrs (_: value: value != null);

  # What a definition the user gave but gpubox cannot pass on turns into: a
  # warning at the default log level, never a silent drop.
  definedByUser = option: option.highestPrio < 1500;
  warnIgnored = cond: message: value: if cond then lib.warn "gpubox: ${message}" value else value;

  copyEntries = option: entries: lib.imap0
    (index: entry:
      if lib.isDerivation entry || lib.isString entry || lib.isPath entry
      then { src = "${entry}"; dst = "/"; }
      else compact {
        src = localFile "${option}[${toString index}].src" entry.src;
        inherit (entry) dst mode uid gid;
      })
    entries;

  hostBinaries = lib.imap0
    (index: entry:
      if lib.isString entry then entry
      else compact {
        src =
          let src = entry.src; in
          # A bare command name is looked up on PATH when the image is copied.
          if lib.isString src && !(lib.hasInfix "/" src) then src
          else localFile "hostBinaries[${toString index}].src" src;
        # A program beside the flake goes on PATH under its own name, not its
        # store name.
        dst = if entry.dst == null && lib.isPath entry.src then "/usr/local/bin/${baseNameOf entry.src}" else entry.dst;
      });

  registry = name: tag: entry:
    if lib.hasPrefix "docker://" entry then entry else "docker://${entry}/${name}:${tag}";

  # A CUDA package set's libraries as nix2gpu takes them, and its MAJOR.MINOR.
  cudaLibraries = set: lib.filter (package: package != null)
    (map (attr: set.${attr} or null) [ "cudatoolkit" "cudnn" "libcublas" "libcufile" "libcusparse" "nccl" ]);
  cudaVersion = set:
    set.cudaMajorMinorVersion or (
      if set ? cudaVersion then lib.versions.majorMinor set.cudaVersion
      else throw "gpubox: `cuda.packages` has neither cudaMajorMinorVersion nor cudaVersion; set `cuda.version`");

  service = name: cfg: compact {
    argv = cfg.argv;
    env = if cfg.env == { } then null else cfg.env;
    inherit (cfg) workingDir user restart restartDelay maxRestarts logFile;
    after = if cfg.after == [ ] then null else cfg.after;
    readiness = if cfg.readiness == null then null else compact cfg.readiness;
  };

  secrets = cfg: lib.mapAttrs'
    (attr: secret: lib.nameValuePair secret.name (compact {
      file = localFile "age.secrets.${attr}.file" secret.file;
      inherit (secret) path mode owner group symlink optional;
    }))
    cfg.secrets;

  home = value:
    if value == null || value == { } then null
    else if value ? activationPackage then "${value.activationPackage}"
    else if lib.isDerivation value || lib.isString value || lib.isPath value then "${value}"
    else throw "gpubox: `home` is neither a home-manager configuration (with activationPackage) nor an activation package";

  tailscaleKeyFile = cfg:
    let nix2gpuKey = if cfg.authKey == "" then null else cfg.authKey; in
    if nix2gpuKey != null && cfg.authKeyFile != null && nix2gpuKey != cfg.authKeyFile
    then throw "gpubox: `tailscale.authKey` and `tailscale.authKeyFile` name different files; keep one (authKey is nix2gpu's name for authKeyFile)"
    else if nix2gpuKey != null then nix2gpuKey else cfg.authKeyFile;

  fromImage = value:
    let
      transport = lib.findFirst (prefix: lib.hasPrefix prefix value) null [ "oci:" "oci-archive:" "docker-archive:" ];
      rest = if transport == null then "" else lib.removePrefix transport value;
    in
    if transport != null && !(lib.hasPrefix "/" rest)
    then throw "gpubox: `fromImage` names the relative path \"${rest}\"; write \"${transport}\${./${rest}}\" or an absolute path"
    else value;

  # The spec, and the store paths the derivation must export the closure of.
  specOf = { config, options }:
    let
      cfg = config;
      cudaSet = cfg.cuda.packages;
      exposedPorts =
        let given = if lib.isList cfg.exposedPorts then cfg.exposedPorts else lib.attrNames cfg.exposedPorts;
        in lib.unique (given ++ lib.optional cfg.ssh.enable "${toString cfg.ssh.port}/tcp");
      ageEnabled = cfg.age.enable;
      base = compact {
        inherit (cfg) name tag maxLayers compression cmd entrypoint created;
        checkPrograms = if cfg.checkPrograms then null else false;
        fromImage = if cfg.fromImage == null then null else fromImage cfg.fromImage;
        systemPackages = map (package: "${package}") (cfg.systemPackages ++ lib.optionals (cudaSet != null) (cudaLibraries cudaSet));
        platforms = if cfg.platforms == [ ] then null else cfg.platforms;
        platform = if cfg.platform == { } then null
          else lib.mapAttrs (_: settings: { systemPackages = map (package: "${package}") settings.systemPackages; }) cfg.platform;
        copyToRoot = copyEntries "copyToRoot" (cfg.copyToRoot ++ cfg.extraCopyToRoot);
        hostBinaries = hostBinaries cfg.hostBinaries;
        # Left out unless defined, so gpubox's default PATH and a base image's
        # PATH, user and folder apply as they do for a gpubox.toml without them.
        env = if definedByUser options.env then cfg.env else null;
        user = if definedByUser options.user then cfg.user else null;
        workingDir = if definedByUser options.workingDir then cfg.workingDir else null;
        extraEnv = cfg.extraEnv;
        labels = cfg.labels;
        extraLabels = cfg.extraLabels;
        inherit exposedPorts;
        # Left out when empty, so specs that name none stay as they were.
        volumes = if cfg.volumes == [ ] then null else cfg.volumes;
        cuda = compact {
          inherit (cfg.cuda) enable capabilities allowMixedVersions;
          version = if cfg.cuda.version != null then cfg.cuda.version
            else if cudaSet != null then cudaVersion cudaSet else null;
        };
        registries = map (registry cfg.name cfg.tag) cfg.registries;
        users = if cfg.users == { } then null else lib.mapAttrs (_: compact) cfg.users;
        ssh = compact cfg.ssh;
        sshdConfig = cfg.sshdConfig;
        age = if ageEnabled && cfg.age.secrets != { }
          then compact { inherit (cfg.age) identityPaths; secrets = secrets cfg.age; }
          else null;
        tailscale = if cfg.tailscale.enable then compact {
          inherit (cfg.tailscale) enable hostname stateDir extraUpFlags extraDaemonFlags;
          authKeyFile = tailscaleKeyFile cfg.tailscale;
        } else null;
        extraStartupScript = if lib.trim cfg.extraStartupScript == "" then null else cfg.extraStartupScript;
        services = if cfg.services == { } then null else lib.mapAttrs service cfg.services;
        stopTimeout = cfg.stopTimeout;
        nixConfig = cfg.nixConfig;
        nix = if cfg.nix.enable then { enable = true; } else null;
        home = home cfg.home;
      };
      # Whose store paths join the image by their own key or are copied elsewhere.
      notStorePaths = [ "systemPackages" "platform" "home" "copyToRoot" "hostBinaries" "age" ];
      storePaths = uniquePaths (storePathsIn (removeAttrs base notStorePaths) ++ map (package: "${package}") cfg.storePaths);
      # The builder checks the whole spec, copy sources included, against the
      # closure of everything it names.
      closureRoots = uniquePaths (storePaths ++ storePathsIn (lib.filterAttrs (key: _: lib.elem key notStorePaths) base));
      spec = base // lib.optionalAttrs (storePaths != [ ]) { inherit storePaths; };
      warned = lib.foldr (check: value: warnIgnored check.when check.message value) spec [
        { when = definedByUser options.nimiSettings; message = "`nimiSettings` is nix2gpu's (nimi's) and is left out; set `restart`, `restartDelay` and `maxRestarts` on each service"; }
        { when = cfg.age.package != null; message = "`age.package` is left out: gpubox-init decrypts secrets itself"; }
        { when = cfg.age.secretsDir != null; message = "`age.secretsDir` is left out: gpubox decrypts into /run/agenix.d and links each secret's `path`"; }
        { when = cfg.age.secretsMountPoint != null; message = "`age.secretsMountPoint` is left out: gpubox mounts /run/agenix.d"; }
        { when = !ageEnabled && cfg.age.secrets != { }; message = "`age.secrets` are left out because `age.enable` is false"; }
        { when = !cfg.tailscale.enable && tailscaleKeyFile cfg.tailscale != null; message = "`tailscale.authKey` is left out because `tailscale.enable` is false"; }
      ];
    in
    {
      spec = warned;
      inherit closureRoots;
    };
in
{
  inherit specOf storePathsIn;
}
