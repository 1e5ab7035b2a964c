# flake-parts modules: `perSystem.gpubox.<name>` (flakeModules.default) and
# `perSystem.nix2gpu.<name>` (flakeModules.nix2gpu, so a nix2gpu flake works by
# swapping its input). Each image is evaluated with `mkImage` and becomes
# `packages.<name>` and `checks.<name>`: the spec file, with its commands as
# attributes (`nix run .#<name>.copyToRegistry`).
#
# Definitions of one image from several modules merge (each is a deferred
# module), so `imports`, `mkDefault` and per-host overrides work as in NixOS.
{ gpuboxLib }:
let
  # Shared by both modules; its `key` makes importing both declare it once.
  packageOption = {
    key = "gpubox/perSystem.gpuboxPackage";
    imports = [
      ({ lib, flake-parts-lib, inputs, ... }: {
        options.perSystem = flake-parts-lib.mkPerSystemOption ({ pkgs, ... }: {
          options.gpuboxPackage = lib.mkOption {
            type = lib.types.either lib.types.package lib.types.path;
            default =
              if inputs ? nixpkgs then gpuboxLib.package pkgs
              else throw "gpubox: set perSystem.gpuboxPackage to a gpubox binary (a file in your flake, e.g. ./bin/gpubox) or package, or add a nixpkgs input so gpubox is built from its source";
            defaultText = lib.literalMD "gpubox built from this flake's Cargo workspace with your `nixpkgs`";
            description = "The gpubox program the images' builders and commands run: a package with bin/gpubox, or the executable itself.";
          };
        });
      })
    ];
  };

  images = { attr, class }: {
    key = "gpubox/perSystem.${attr}";
    imports = [
      packageOption
      ({ lib, flake-parts-lib, inputs, ... }: {
        options.perSystem = flake-parts-lib.mkPerSystemOption ({ config, pkgs, system, self', inputs', ... }: {
          options.${attr} = lib.mkOption {
            type = lib.types.lazyAttrsOf lib.types.deferredModule;
            default = { };
            description = "gpubox images, each becoming packages.<name> and checks.<name>; the options are nix2gpu's (see gpubox's README).";
          };
          config =
            let
              made = lib.mapAttrs
                (name: module: gpuboxLib.mkImage {
                  inherit system name class pkgs;
                  gpubox = config.gpuboxPackage;
                  modules = [ module ];
                  specialArgs = { inherit self' inputs inputs'; };
                  prefix = [ "perSystem" system attr name ];
                })
                config.${attr};
            in
            {
              packages = made;
              checks = made;
            };
        });
      })
    ];
  };
in
{
  default = images { attr = "gpubox"; class = "gpubox"; };
  nix2gpu = images { attr = "nix2gpu"; class = "nix2gpu"; };
}
