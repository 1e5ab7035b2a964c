# The derivations of one image, built with plain `derivation`s whose builder is
# gpubox itself, so nothing here needs nixpkgs' stdenv:
# - the image: ONE file, the spec as JSON. Its builder checks the spec against
#   the closure Nix exports to it (so a refused value fails `nix build`, with
#   gpubox's own message) and writes it; the file's references are the store
#   paths it names.
# - one command per nix2gpu command name, `nix run .#IMAGE.COMMAND -- ARGS`: a
#   script that runs `gpubox nix run COMMAND SPEC ARGS`.
{ lib }:
let
  commands = [
    "copyToDockerDaemon"
    "copyToPodman"
    "copyToRegistry"
    "copyTo"
    "copyToContainerRuntime"
    "copyToGithub"
    "shell"
    "podmanShell"
    "dockerShell"
    "inspect"
    "diff"
    "deploy"
  ];

  # Store names allow fewer characters than image names (no `/`).
  storeName = name: lib.replaceStrings [ "/" ] [ "-" ] name;

  # Small and made in a blink: never worth a remote builder or a cache lookup.
  local = { preferLocalBuild = true; allowSubstitutes = false; };

  image = { system, spec, closureRoots, config, gpubox }:
    let
      name = storeName spec.name;
      specFile = derivation ({
        name = "${name}.json";
        inherit system;
        builder = gpubox;
        args = [ "nix" "spec-builder" ];
        __structuredAttrs = true;
        inherit spec;
        exportReferencesGraph.closure = closureRoots;
      } // local);
      command = commandName:
        let program = "${name}-${commandName}"; in
        derivation ({
          name = program;
          inherit system program;
          builder = gpubox;
          args = [ "nix" "command-builder" ];
          __structuredAttrs = true;
          command = commandName;
          spec = "${specFile}";
          inherit gpubox;
        } // local) // { meta.mainProgram = program; };
    in
    specFile
    // lib.genAttrs commands command
    // config.passthru
    // {
      meta = config.meta;
      # The evaluated options and the spec as a Nix value, for `nix eval`.
      inherit config;
      imageSpec = spec;
    };
in
{
  inherit image commands;
}
