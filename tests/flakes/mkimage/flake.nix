# The demo image through `gpubox.lib.mkImage`, without flake-parts.
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

  outputs = { gpubox, ... }:
    let
      system = "x86_64-linux";
      fixtures = import ./closure.nix { inherit system; };
      registry = builtins.readFile ./registry;
    in
    {
      packages.${system}.demo = gpubox.lib.mkImage {
        inherit system;
        gpubox = ./gpubox;
        name = "demo";
        modules = [ (import ./demo.nix { inherit fixtures registry; }) ];
      };
    };
}
