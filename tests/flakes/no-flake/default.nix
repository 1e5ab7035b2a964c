# The demo image through nix/lib.nix with plain `nix-build`, no flakes:
#   nix-build --arg lib PATH/TO/nixpkgs/lib --arg gpuboxSource PATH/TO/gpubox
{ lib, gpuboxSource }:
let
  gpubox = import (gpuboxSource + "/nix/lib.nix") { lib = import lib; };
in
gpubox.mkImage {
  system = builtins.currentSystem;
  gpubox = ./gpubox;
  name = "demo";
  modules = [
    (import ./demo.nix {
      fixtures = import ./closure.nix { };
      registry = builtins.readFile ./registry;
    })
  ];
}
