# A user's flake written the way nix2gpu's README writes one, with gpubox's
# module in nix2gpu's place. The tests copy it beside ../demo.nix (the image),
# tests/fixtures/closure.nix (its packages, built by real Nix), a file naming
# the test registry and a gpubox binary, and override the inputs with local
# copies.
{
  inputs = {
    nixpkgs-lib.url = "github:nix-community/nixpkgs.lib";
    flake-parts = {
      url = "github:hercules-ci/flake-parts";
      inputs.nixpkgs-lib.follows = "nixpkgs-lib";
    };
    gpubox = {
      url = "git+https://example.invalid/gpubox";
      inputs.nixpkgs-lib.follows = "nixpkgs-lib";
      inputs.flake-parts.follows = "flake-parts";
    };
  };

  outputs = inputs@{ flake-parts, ... }:
    flake-parts.lib.mkFlake { inherit inputs; } {
      imports = [ inputs.gpubox.flakeModules.nix2gpu ];
      systems = [ "x86_64-linux" ];

      perSystem = { system, ... }:
        let
          fixtures = import ./closure.nix { inherit system; };
          registry = builtins.readFile ./registry;
        in
        {
          # A prebuilt gpubox, as a user without nixpkgs gives it.
          gpuboxPackage = ./gpubox;

          nix2gpu.demo = import ./demo.nix { inherit fixtures registry; };
        };
    };
}
