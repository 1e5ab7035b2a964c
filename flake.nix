{
  description = "gpubox: GPU-ready OCI images from Nix closures, reproducibly and without a daemon";

  inputs = {
    # nixpkgs' `lib` alone; make it follow your nixpkgs with
    # `inputs.gpubox.inputs.nixpkgs-lib.follows = "nixpkgs"`.
    nixpkgs-lib.url = "github:nix-community/nixpkgs.lib";
    flake-parts = {
      url = "github:hercules-ci/flake-parts";
      inputs.nixpkgs-lib.follows = "nixpkgs-lib";
    };
  };

  outputs = inputs@{ self, nixpkgs-lib, flake-parts, ... }:
    let
      gpuboxLib = import ./nix/lib.nix { inherit (nixpkgs-lib) lib; src = self; };
      flakeModules = import ./nix/flake-module.nix { inherit gpuboxLib; };
    in
    flake-parts.lib.mkFlake { inherit inputs; } {
      # No nixpkgs here: images and the CLI are built with the user's.
      systems = [ ];
      flake = {
        lib = {
          inherit (gpuboxLib) mkImage evalImage specOf;
          # The gpubox CLI for a nixpkgs: `gpubox.lib.package pkgs`.
          inherit (gpuboxLib) package;
        };
        inherit flakeModules;
        # nix2gpu's spelling (`imports = [ inputs.nix2gpu.flakeModule ]`).
        flakeModule = flakeModules.nix2gpu;
        modules.gpubox.default = gpuboxLib.optionsModule;
        modules.nix2gpu.default = gpuboxLib.optionsModule;
        overlays.default = final: _prev: { gpubox = gpuboxLib.package final; };
        templates.default = {
          path = ./templates/default;
          description = "A GPU image described with gpubox's flake-parts module";
        };
      };
    };
}
