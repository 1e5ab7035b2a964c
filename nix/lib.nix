# gpubox's Nix library, usable with or without flakes:
#
#   let gpubox = import ./nix/lib.nix { lib = import <nixpkgs/lib>; };
#   in gpubox.mkImage { system = "x86_64-linux"; gpubox = ./bin/gpubox; name = "demo";
#                       modules = [ { systemPackages = [ ... ]; } ]; }
#
# `mkImage` evaluates the option modules (`options.nix`) with `lib.evalModules`,
# turns the configuration into gpubox's spec (`spec.nix`) and returns the spec
# derivation with its commands (`image.nix`).
{ lib, src ? ../. }:
let
  specLib = import ./spec.nix { inherit lib; };
  imageLib = import ./image.nix { inherit lib; };

  # The gpubox CLI built from this source tree with a nixpkgs' Rust support.
  package = pkgs: pkgs.callPackage ./package.nix { inherit src; };

  # The program the derivations run: a package's bin/gpubox, or the
  # executable itself (a prebuilt binary as a Nix path or store path).
  program = gpubox:
    if lib.isDerivation gpubox then "${gpubox}/bin/${gpubox.meta.mainProgram or "gpubox"}"
    else "${gpubox}";

  evalImage = { name, modules ? [ ], specialArgs ? { }, class ? "gpubox", prefix ? [ ] }:
    lib.evalModules {
      inherit class prefix;
      modules = [ ./options.nix ] ++ modules;
      specialArgs = { inherit name; } // specialArgs;
    };

  mkImage =
    { pkgs ? null
    , system
    , gpubox ? null
    , modules ? [ ]
    , name
    # Extra module arguments (flake modules pass self', inputs, inputs').
    , specialArgs ? { }
    , class ? "gpubox"
    , prefix ? [ name ]
    }:
    let
      evaluated = evalImage {
        inherit name modules class prefix;
        specialArgs = { inherit pkgs; } // specialArgs;
      };
      gpuboxPackage =
        if gpubox != null then gpubox
        else if pkgs != null then package pkgs
        else throw "gpubox: mkImage for `${name}` needs `gpubox` (a gpubox binary or package) or `pkgs` (a nixpkgs to build it with)";
      made = specLib.specOf { inherit (evaluated) config options; };
    in
    imageLib.image {
      inherit system;
      inherit (made) spec closureRoots;
      inherit (evaluated) config;
      gpubox = program gpuboxPackage;
    };
in
{
  inherit mkImage evalImage package program;
  inherit (specLib) specOf;
  # The option declarations alone, for `lib.evalModules` or documentation.
  optionsModule = ./options.nix;
  # The commands each image has, as `nix run .#IMAGE.COMMAND`.
  inherit (imageLib) commands;
}
